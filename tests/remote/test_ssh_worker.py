"""Steps on workers reached over ssh, execnet's other way to another machine: an sshd of the test's
own on 127.0.0.1 (its own host key, its own authorized key), the workers started by ssh in folders
given relative to the login's home (where ssh gateways start) and absolute."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from planhelpers import ledger_of, sh

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
LOGIN_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)  # where ssh starts (pytester points $HOME elsewhere)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ssh_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An ssh client configuration whose host ``buildhost`` is a running sshd on 127.0.0.1."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None or os.geteuid() != 0:
        pytest.skip("needs sshd and ssh (Debian's openssh-server, which .ci/run installs) and root")
    base = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / key)], check=True)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {base / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder, as its package makes it
    log = (base / "sshd.log").open("wb")
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stderr=log)
    config = base / "ssh_config"
    config.write_text(
        f"Host buildhost\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {base / 'client_key'}\n"
        "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ssh", "-F", str(config), "buildhost", "true"], capture_output=True).returncode:
            assert server.poll() is None, (base / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not accept the test's key"
            time.sleep(0.2)
        yield config
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_steps_on_ssh_workers_hand_on_files_and_log_to_the_controller(
    pytester: pytest.Pytester, ssh_config: Path, tmp_path: Path
) -> None:
    in_home = f"planrun-ssh-test-{uuid.uuid4().hex[:8]}"  # relative: under the login's home
    absolute = tmp_path / "second-host"
    absolute.mkdir()
    gateway = f"ssh=buildhost//ssh_config={ssh_config}//python={sys.executable}"
    plan = {
        "plan_id": "over-ssh",
        "version": "1",
        "globals": {"max_concurrency": 2},
        "steps": [
            sh(
                "build",
                "mkdir -p dist && head -c 300000 /dev/urandom > dist/app.bin && pwd && echo to-stderr >&2",
                runs_on="builder",
                provides=[{"name": "app", "path": "dist/app.bin"}],
            ),
            sh(
                "test",
                'sha256sum dist/app.bin "$PLANRUN_RUN_DIR/provided/dist/app.bin"; pwd',
                runs_on="tester",
                depends_on=["build"],
                consumes=["app"],
            ),
        ],
    }
    (pytester.path / "plan.json").write_text(json.dumps(plan))
    try:
        result = pytester.runpytest_subprocess(
            "--plan=plan.json",
            "-p",
            "no:cacheprovider",
            "--dist",
            "load",
            "--tx",
            f"{gateway}//chdir={in_home}",
            "--tx",
            f"{gateway}//chdir={absolute}",
            "--planrun-worker-label=gw0=builder",
            "--planrun-worker-label=gw1=tester",
            timeout=120,
        )
    finally:
        shutil.rmtree(LOGIN_HOME / in_home, ignore_errors=True)
    result.assert_outcomes(passed=2)
    attempts, _ = ledger_of(pytester.path)
    assert [(a["step_id"], a["worker"]) for a in attempts] == [("build", "gw0"), ("test", "gw1")]
    run_dir = Path(attempts[0]["stdout_path"]).parents[2]
    assert run_dir.parent == pytester.path / ".ledger" / "runs"
    build_out = Path(attempts[0]["stdout_path"]).read_text()
    assert build_out.strip() == str(LOGIN_HOME / in_home)
    assert Path(attempts[0]["stderr_path"]).read_text() == "to-stderr\n"
    sha = hashlib.sha256((run_dir / "provided" / "dist" / "app.bin").read_bytes()).hexdigest()
    test_out = Path(attempts[1]["stdout_path"]).read_text().splitlines()
    assert [line.split()[0] for line in test_out[:2]] == [sha, sha]
    assert test_out[2] == str(absolute)
    # each worker's temporary folder (its $PLANRUN_RUN_DIR, in the ssh session's /tmp) is gone
    assert not list(Path("/tmp").glob(f"planrun-{attempts[0]['run_id']}-gw*"))
