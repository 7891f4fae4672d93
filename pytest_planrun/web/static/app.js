// planrun serve: keeps the page in step with the server's event stream. Text from the ledger is
// only ever set with textContent, never parsed as HTML.
"use strict";

const token = document.querySelector('meta[name="planrun-token"]').content;
const page = document.body.dataset.page;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return seconds.toFixed(1) + "s";
  const minutes = Math.floor(seconds / 60);
  const rest = String(Math.floor(seconds % 60)).padStart(2, "0");
  return minutes < 60 ? minutes + "m" + rest + "s" : Math.floor(minutes / 60) + "h" + String(minutes % 60).padStart(2, "0") + "m";
}

// As the server renders ledger times: to the second, without the fraction.
function time(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "") : "";
}

function variables(vars) {
  return Object.entries(vars || {}).map(([k, v]) => k + "=" + v).join(" ");
}

function badge(state) {
  return el("span", { class: "badge state-" + state }, state);
}

function runUrl(runId) {
  return "/runs/" + encodeURIComponent(runId);
}

function cancelForm(action, label) {
  const form = el("form", { method: "post", action: action, class: "cancel" });
  form.append(el("input", { type: "hidden", name: "token", value: token }), el("button", { type: "submit" }, label));
  return form;
}

// Cancel buttons post with the server's token in a header; the answer is shown in place.
document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.classList.contains("cancel")) return;
  event.preventDefault();
  const button = form.querySelector("button");
  button.disabled = true;
  const flash = document.getElementById("flash");
  try {
    const response = await fetch(form.action, {
      method: "POST",
      headers: { "X-Planrun-Token": token, Accept: "application/json" },
    });
    const answer = await response.json();
    if (flash) flash.textContent = answer.message;
  } catch (error) {
    if (flash) flash.textContent = "cancel failed: " + error;
    button.disabled = false;
  }
});

function renderRuns(data) {
  const body = document.getElementById("runs");
  body.replaceChildren(
    ...data.runs.map((run) =>
      el(
        "tr",
        { "data-run": run.run_id },
        el("td", {}, el("a", { href: runUrl(run.run_id) }, run.run_id)),
        el("td", {}, run.plan_id || "", el("div", { class: "sub" }, run.plan_path || "")),
        el("td", { class: "vars" }, variables(run.variables)),
        el("td", {}, badge(run.state)),
        el("td", {}, time(run.started_at || run.created_at)),
        el("td", { class: "num" }, duration(run.duration)),
      ),
    ),
  );
}

// Which logs are unfolded: a running or failed step's by default, then as the reader leaves them.
const openLogs = new Set();
const closedLogs = new Set();
const UNFOLDED = ["running", "retrying", "failed"];

function logDetails(step) {
  const text = [step.log.stdout, step.log.stderr ? "--- stderr ---\n" + step.log.stderr : ""].join("");
  if (!text) return "";
  const details = el("details", { "data-step": step.step_id }, el("summary", {}, "log tail"), el("pre", { class: "log" }, text));
  const id = step.step_id;
  details.open = openLogs.has(id) || (!closedLogs.has(id) && UNFOLDED.includes(step.state));
  details.addEventListener("toggle", () => {
    (details.open ? openLogs : closedLogs).add(id);
    (details.open ? closedLogs : openLogs).delete(id);
  });
  return details;
}

function attemptsText(step) {
  return step.attempts
    .map((a) => "#" + a.attempt + " " + (a.outcome || a.state) + (a.exit_code === null ? "" : " (exit " + a.exit_code + ")") + " " + duration(a.duration))
    .join(", ");
}

// A running step's duration cell counts on between snapshots: its attempt's start, plus the
// time of the attempts before it.
function running(step) {
  const last = step.attempts[step.attempts.length - 1];
  if (step.state !== "running" || !last || !last.started_at) return { class: "num" };
  const before = step.attempts.slice(0, -1).reduce((sum, a) => sum + (a.duration || 0), 0);
  return { class: "num", "data-started": last.started_at, "data-before": String(before) };
}

function tick() {
  for (const cell of document.querySelectorAll("[data-started]")) {
    const seconds = (Date.now() - Date.parse(cell.dataset.started)) / 1000 + Number(cell.dataset.before || 0);
    if (seconds >= 0) cell.textContent = duration(seconds);
  }
}

function renderRun(data, runId) {
  const run = data.run;
  const state = document.getElementById("run-state");
  state.className = "badge state-" + run.state;
  state.textContent = run.state;
  const runDuration = document.getElementById("run-duration");
  runDuration.textContent = duration(run.duration);
  if (data.live && run.started_at) runDuration.dataset.started = run.started_at;
  else delete runDuration.dataset.started;
  document.getElementById("run-message").textContent = run.error_message || "";
  const cancelBox = document.getElementById("run-cancel");
  if (!data.live) cancelBox.replaceChildren();
  else if (!cancelBox.firstChild) cancelBox.append(cancelForm(runUrl(runId) + "/cancel", "Cancel run"));

  const byId = new Map(data.steps.map((s) => [s.step_id, s]));
  for (const node of document.querySelectorAll("svg.dag g.node")) {
    const step = byId.get(node.dataset.step);
    if (!step) continue;
    const wanted = "node state-" + step.state;
    if (node.getAttribute("class") !== wanted) {
      node.setAttribute("class", wanted);
      node.dataset.changedAt = String(Date.now()); // when this page showed the change
    }
    const label = step.state + (step.attempts.length > 1 ? " · " + step.attempts.length + " attempts" : "") + (step.duration === null ? "" : " · " + duration(step.duration));
    node.querySelector("text.status").textContent = label;
  }

  document.getElementById("steps").replaceChildren(
    ...data.steps.map((step) =>
      el(
        "tr",
        { "data-step": step.step_id },
        el("td", {}, step.name, step.name === step.step_id ? "" : el("div", { class: "sub" }, step.step_id)),
        el("td", {}, badge(step.state)),
        el("td", {}, attemptsText(step)),
        el("td", running(step), duration(step.duration)),
        el("td", {}, step.reason || "", logDetails(step)),
        el("td", {}, step.state === "running" && data.live ? cancelForm(runUrl(runId) + "/steps/" + encodeURIComponent(step.step_id) + "/cancel", "Cancel step") : ""),
      ),
    ),
  );
  document.getElementById("events").replaceChildren(
    ...data.events.map((e) => el("li", {}, time(e.timestamp) + " " + e.type + " " + (e.data && e.data.step_id ? e.data.step_id : ""))),
  );
  document.body.dataset.runState = run.state;
}

function follow(url, render) {
  const source = new EventSource(url);
  source.onmessage = (message) => render(JSON.parse(message.data));
  return source;
}

setInterval(tick, 1000);
if (page === "runs") follow("/events", renderRuns);
if (page === "run") {
  const runId = document.body.dataset.run;
  follow(runUrl(runId) + "/events", (data) => renderRun(data, runId));
}
