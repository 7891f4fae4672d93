#!/usr/bin/env bash
# Shows what JUnit consumers make of a --junitxml file, with those that are installed (a tool for trying
# files by hand; the tests do not need it):
#   xunit-viewer  XUNIT_VIEWER=DIR, a folder where `npm install xunit-viewer` ran: the status card of each
#                 testcase (the viewer takes the first child that is not failure/error/skipped as the status)
#   junitparser   and junit2html, if the Python running this has them: result elements, HTML report
#   GitLab        GITLAB_VIEW=PATH to a driver that runs GitLab's lib/gitlab/ci/parsers/test/junit.rb
# Usage: scripts/junit-consumers.sh out.xml [more.xml ...]
set -euo pipefail
python="${PYTHON:-python3}"
for file in "$@"; do
  echo "=== $file"
  if [ -n "${XUNIT_VIEWER:-}" ]; then
    echo "--- xunit-viewer"
    (cd "$XUNIT_VIEWER" && node --input-type=module -e "
      import fs from 'fs'
      import parse from './node_modules/xunit-viewer/src/cli/parse.js'
      const out = await parse(fs.readFileSync(process.argv[1], 'utf8'))
      for (const suite of Object.values(out.suites))
        for (const t of Object.values(suite.tests))
          console.log((t.status || '?').padEnd(12), t.name, '|', (t.messages[0] || '').split('\n')[0])
    " "$(realpath "$file")")
  fi
  if "$python" -c "import junitparser" 2>/dev/null; then
    echo "--- junitparser"
    "$python" - "$file" <<'EOF'
import sys
import junitparser
for suite in junitparser.JUnitXml.fromfile(sys.argv[1]):
    for case in suite:
        kinds = [type(r).__name__ for r in case.result] or ["passed"]
        print(f"{'/'.join(kinds):12} {case.name} | {(case.system_out or '').splitlines()[:1]}")
EOF
  fi
  if command -v junit2html >/dev/null; then
    junit2html "$file" "$file.html" && echo "--- junit2html: $file.html"
  fi
  if [ -n "${GITLAB_VIEW:-}" ]; then
    echo "--- GitLab"
    "$GITLAB_VIEW" "$file"
  fi
done
