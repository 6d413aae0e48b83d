// The winch console: plain JavaScript, no build step, nothing from the
// internet. The token lives in sessionStorage and goes in the Authorization
// header of each request, never in a cookie: another site's page cannot
// make the browser send it (no CSRF), and the CSP forbids scripts from
// anywhere but here. Every value from the API is put in the page as text.
"use strict";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "rejected", "dead"];
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "rejected", "dead"]);
const COLORS = { queued: "#8c959f", running: "#0969da", succeeded: "#2da44e", failed: "#cf222e",
  cancelled: "#bf8700", timed_out: "#fb8500", rejected: "#8250df", dead: "#57606a" };

const main = document.getElementById("main");
let me = null; // {principal, roles, audit}
let leave = []; // what to stop when the page changes (streams, timers)

// h builds an element: h("a", {href: "#"}, "text", child...).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// show replaces the page's content, leaving out what is null.
function show(...nodes) { main.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false)); }

function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

function stateBadge(state) {
  return h("span", { class: "state " + (state || "queued"), "data-state": state || "" }, state || "?");
}

// toast shows msg for a few seconds; a new page hides it unless keep
// (a message about why the page changed).
function toast(msg, keep) {
  const t = document.getElementById("toast");
  toast.keep = !!keep;
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

function token() { return sessionStorage.getItem("winch-token"); }

class Problem extends Error {
  constructor(p) { super(p.detail || p.title || "request failed"); this.problem = p; this.status = p.status; }
}

// api calls the gateway with the token, and throws a Problem on an error.
async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token() }, opts.headers || {});
  if (opts.body) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!resp.ok && resp.status !== 202) {
    if (resp.status === 401) { signOut("Your token was not accepted: " + (body && body.detail)); }
    throw new Problem(Object.assign({ status: resp.status }, body));
  }
  return body;
}

function problemBox(err) {
  const p = err.problem || { detail: String(err) };
  const box = h("div", { class: "problem", role: "alert" }, p.detail || p.title);
  if (p.errors) box.append(h("ul", {}, p.errors.map((e) => h("li", {}, h("strong", {}, e.param), ": ", e.message))));
  if (p.job_id) box.append(h("p", {}, "On the record as job ", h("a", { href: "#/jobs/" + p.job_id }, p.job_id), "."));
  return box;
}

function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return isNaN(d) || d.getFullYear() < 1971 ? "" : d.toLocaleString();
}

function duration(a, b) {
  if (!a) return "";
  const start = new Date(a), end = b ? new Date(b) : new Date();
  if (isNaN(start) || start.getFullYear() < 1971) return "";
  const ms = end - start;
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

// --- sign in -------------------------------------------------------------

function signOut(why) {
  sessionStorage.removeItem("winch-token");
  me = null;
  renderWho();
  // On the sign-in page the form says why; elsewhere a toast does.
  if (why && !location.hash.startsWith("#/signin")) toast(why, true);
  location.hash = "#/signin";
}

function renderWho() {
  document.getElementById("who").textContent = me ? me.principal + (me.roles.length ? " (" + me.roles.join(", ") + ")" : "") : "";
  document.getElementById("signout").hidden = !me;
}

function viewSignIn() {
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const err = h("div");
  const form = h("form", { class: "panel signin", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem("winch-token", input.value.trim());
    try {
      me = await api("/v1/whoami");
      renderWho();
      document.getElementById("toast").hidden = true;
      location.hash = "#/run";
    } catch (x) {
      sessionStorage.removeItem("winch-token");
      err.replaceChildren(problemBox(x));
    }
  } },
  h("h1", {}, "Sign in"),
  h("div", { class: "field" }, h("label", { for: "token" }, "Token"), input,
    h("p", { class: "help", id: "token-help" }, "A token from the gateway's tokens file (winch dev keeps one in its data dir), or an OpenID Connect ID token from your organisation's issuer.")),
  err,
  h("button", { class: "primary", type: "submit" }, "Sign in"));
  show(form);
  input.focus();
}

// --- run: the command tree and a form per command --------------------------

let commands = null;

async function loadCommands() {
  if (!commands) commands = (await api("/v1/commands")).commands;
  return commands;
}

async function viewRun(name) {
  const cmds = await loadCommands();
  const byModule = {};
  for (const c of cmds) (byModule[c.module] = byModule[c.module] || []).push(c);
  const tree = h("nav", { class: "tree panel", "aria-label": "Commands" },
    Object.keys(byModule).sort().map((m) => [h("h2", {}, m),
      h("ul", {}, byModule[m].map((c) => h("li", {}, h("a", { href: "#/run/" + c.name, "aria-current": c.name === name ? "true" : false, title: c.help }, c.name))))]));
  const cmd = cmds.find((c) => c.name === name);
  const right = h("section", { class: "panel", "aria-live": "polite" });
  if (!cmd) {
    right.append(h("h1", {}, "Run a command"), h("p", { class: "muted" }, name ? "No command " + name + "." : "Pick a command to see its form."));
  } else {
    right.append(commandForm(cmd));
  }
  show(h("h1", { class: "hide-narrow" }, "Run"), h("div", { class: "cols" }, tree, right));
  if (cmd) { const first = right.querySelector("input, select"); if (first) first.focus(); }
}

// fieldFor makes the input of one parameter from its JSON Schema.
function fieldFor(name, s, required) {
  const id = "p-" + name;
  const help = s.description ? h("p", { class: "help", id: id + "-help" }, s.description) : null;
  const described = help ? id + "-help" : null;
  let input;
  if (s.enum) {
    input = h("select", { id, name, "aria-describedby": described, required },
      required ? null : h("option", { value: "" }, "(default" + (s.default !== undefined ? ": " + s.default : "") + ")"),
      s.enum.map((v) => h("option", { value: v, selected: s.default === v }, v)));
  } else if (s.type === "boolean") {
    input = h("input", { type: "checkbox", id, name, "aria-describedby": described, checked: s.default === true });
    return h("div", { class: "field check" }, input, h("label", { for: id }, name), help);
  } else if (s.type === "integer" || s.type === "number") {
    input = h("input", { type: "number", id, name, required, min: s.minimum, max: s.maximum, step: s.type === "integer" ? "1" : "any",
      value: s.default, "aria-describedby": described });
  } else if (s.type === "array") {
    input = h("input", { type: "text", id, name, required, placeholder: "a, b, c", "aria-describedby": described, value: Array.isArray(s.default) ? s.default.join(", ") : null });
  } else {
    const secret = s.format === "password";
    input = h("input", { type: secret ? "password" : "text", id, name, required, pattern: s.pattern, autocomplete: secret ? "new-password" : "off",
      value: s.default, "aria-describedby": described });
  }
  input.dataset.type = s.type;
  return h("div", { class: "field" }, h("label", { for: id }, name, required ? h("span", { class: "req", "aria-label": "required" }, " *") : null,
    h("span", { class: "muted" }, " " + (s.enum ? "one of" : s.format === "password" ? "secret" : s.type))), input, help);
}

function commandForm(cmd) {
  const props = cmd.params.properties || {};
  const required = new Set(cmd.params.required || []);
  const names = Object.keys(props).sort((a, b) => (required.has(b) - required.has(a)) || a.localeCompare(b));
  const out = h("div");
  const queue = h("input", { type: "text", id: "run-queue", placeholder: "default" });
  const timeout = h("input", { type: "text", id: "run-timeout", placeholder: cmd.timeout || "the command's own" });
  const submit = h("button", { class: "primary", type: "submit" }, "Run " + cmd.name);
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    const params = {};
    for (const n of names) {
      const el = form.elements[n];
      const s = props[n];
      if (s.type === "boolean") { params[n] = el.checked; continue; }
      if (el.value === "") continue;
      if (s.type === "integer" || s.type === "number") params[n] = Number(el.value);
      else if (s.type === "array") params[n] = el.value.split(",").map((x) => x.trim()).filter((x) => x);
      else params[n] = el.value;
    }
    const body = { command: cmd.name, params };
    if (queue.value.trim()) body.queue = queue.value.trim();
    if (timeout.value.trim()) body.timeout = timeout.value.trim();
    submit.disabled = true;
    try {
      const sub = await api("/v1/jobs", { method: "POST", body: JSON.stringify(body) });
      location.hash = "#/jobs/" + sub.id;
    } catch (x) {
      out.replaceChildren(problemBox(x));
      submit.disabled = false;
    }
  } },
  names.map((n) => fieldFor(n, props[n], required.has(n))),
  names.length ? null : h("p", { class: "muted" }, "This command takes no parameters."),
  h("details", {}, h("summary", {}, "Queue and timeout"),
    h("div", { class: "field" }, h("label", { for: "run-queue" }, "Queue"), queue),
    h("div", { class: "field" }, h("label", { for: "run-timeout" }, "Timeout"), timeout)),
  out,
  submit);
  return h("div", {}, h("h1", {}, cmd.name), cmd.help ? h("p", {}, cmd.help) : null,
    cmd.roles.length ? h("p", { class: "muted" }, "Runs for principals with the role " + cmd.roles.join(" or ") + ".") : null, form);
}

// --- server-sent events over fetch (to send the token in a header) --------

// follow streams the job's events to onEvent, resuming after a dropped
// connection from the last id it saw, until the job ends or stop().
function follow(id, onEvent, onEnd) {
  const ctl = new AbortController();
  let lastId = 0, done = false;
  (async () => {
    for (let attempt = 0; !done && !ctl.signal.aborted; attempt++) {
      try {
        const headers = { Authorization: "Bearer " + token() };
        if (lastId) headers["Last-Event-ID"] = String(lastId);
        const resp = await fetch("/v1/jobs/" + encodeURIComponent(id) + "/events", { headers, signal: ctl.signal });
        if (!resp.ok) { onEnd(new Error("events: " + resp.status)); return; }
        const reader = resp.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done: eof } = await reader.read();
          if (eof) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, i); buf = buf.slice(i + 2);
            let data = "", fid = 0;
            for (const line of frame.split("\n")) {
              if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("id: ")) fid = Number(line.slice(4));
            }
            if (!data) continue;
            if (fid) lastId = fid;
            const ev = JSON.parse(data);
            onEvent(ev);
            if (ev.kind === "finished" || ev.kind === "rejected") done = true;
          }
        }
        if (done) { onEnd(null); return; }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, Math.min(500 * (attempt + 1), 5000)));
    }
  })();
  return () => ctl.abort();
}

// --- one job ---------------------------------------------------------------

async function viewJob(id) {
  let job = null, fromAudit = false;
  try {
    job = await api("/v1/jobs/" + encodeURIComponent(id));
  } catch (x) {
    if (x.status !== 404 || !me.audit) throw x;
    const a = await api("/v1/audit/jobs/" + encodeURIComponent(id));
    job = a.job || { job_id: id, state: "" };
    job._events = a.events; fromAudit = true;
  }
  const badge = h("span", { id: "job-state", role: "status", "aria-live": "polite" }, stateBadge(job.state));
  const cancel = h("button", { class: "danger", type: "button", id: "cancel", hidden: TERMINAL.has(job.state), onclick: async () => {
    cancel.disabled = true;
    try {
      const r = await api("/v1/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST" });
      toast("Cancel: " + (r.outcome || "requested"));
    } catch (x) { toast(x.message); cancel.disabled = false; }
  } }, "Cancel");
  const facts = h("dl", { class: "facts" });
  const fact = {};
  for (const [k, label] of [["command", "Command"], ["principal", "Principal"], ["queue", "Queue"], ["worker", "Worker"], ["image", "Image"],
    ["executor", "Executor"], ["commit", "Module commit"], ["exit", "Exit code"], ["duration", "Duration"], ["created", "Created"],
    ["started", "Started"], ["finished", "Finished"], ["error", "Error"]]) {
    fact[k] = h("dd", { "data-fact": k });
    fact[k].label = h("dt", {}, label);
    facts.append(fact[k].label, fact[k]);
  }
  const params = h("tbody");
  const stdout = h("pre", { class: "log", id: "stdout", tabindex: "0", "aria-label": "Standard output" });
  const stderr = h("pre", { class: "log stderr", id: "stderr", tabindex: "0", "aria-label": "Standard error" });
  const events = h("tbody", { id: "events" });
  const state = Object.assign({}, job);
  function showFacts() {
    fact.command.textContent = state.command || "";
    fact.principal.textContent = state.principal || "";
    fact.queue.textContent = state.queue || "";
    fact.worker.textContent = state.worker || "";
    fact.image.textContent = state.image || "";
    fact.executor.textContent = state.executor || "";
    fact.commit.textContent = state.commit || "";
    fact.exit.textContent = state.exit_code !== undefined && state.exit_code !== null ? String(state.exit_code) : "";
    fact.duration.textContent = state.started_at ? duration(state.started_at, state.finished_at) : "";
    fact.created.textContent = fmtTime(state.created_at);
    fact.started.textContent = fmtTime(state.started_at);
    fact.finished.textContent = fmtTime(state.finished_at);
    fact.error.textContent = state.error || "";
    // What does not apply (an image with the process executor, an error
    // of a job that succeeded) is left out rather than shown blank.
    for (const dd of Object.values(fact)) { dd.hidden = dd.textContent === ""; dd.label.hidden = dd.hidden; }
    params.replaceChildren(...Object.keys(state.params || {}).sort().map((k) =>
      h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "mono" }, JSON.stringify(state.params[k])))));
    badge.replaceChildren(stateBadge(state.state));
    cancel.hidden = TERMINAL.has(state.state);
  }
  function onEvent(ev) {
    if (ev.kind === "log") {
      (ev.stream === "stderr" ? stderr : stdout).append(document.createTextNode(ev.data));
      const pane = ev.stream === "stderr" ? stderr : stdout;
      pane.scrollTop = pane.scrollHeight;
    }
    if (ev.state) state.state = ev.state;
    for (const k of ["command", "principal", "queue", "worker", "image", "executor", "commit", "error", "created_at", "started_at"]) {
      if (ev[k]) state[k] = ev[k];
    }
    if (ev.params && !state.params) state.params = ev.params;
    if (ev.kind === "started") state.started_at = ev.time;
    if (ev.kind === "finished" || ev.kind === "rejected") { state.finished_at = ev.time; if (ev.exit_code !== undefined) state.exit_code = ev.exit_code; }
    const detail = ev.kind === "log" ? ev.data.length + " bytes of " + ev.stream : [ev.state, ev.reason, ev.error, ev.worker && "on " + ev.worker, ev.image].filter(Boolean).join(" · ");
    events.append(h("tr", {}, h("td", { class: "mono nowrap" }, ev.attempt + "." + ev.seq), h("td", {}, fmtTime(ev.time)),
      h("td", {}, ev.kind), h("td", { class: "mono" }, detail)));
    showFacts();
  }
  show(
    h("div", { class: "jobhead" }, h("h1", {}, id), badge, cancel),
    fromAudit ? h("p", { class: "muted" }, "From the audit store: NATS no longer keeps this job.") : null,
    h("div", { class: "grid2" },
      h("section", { class: "panel", "aria-label": "Job" }, facts),
      h("section", { class: "panel", "aria-label": "Parameters" }, h("h2", {}, "Parameters"), h("p", { class: "help" }, "Secrets are masked."),
        h("table", {}, params))),
    h("div", { class: "grid2 logs" },
      h("section", { class: "panel" }, h("h2", {}, "stdout"), stdout),
      h("section", { class: "panel" }, h("h2", {}, "stderr"), stderr)),
    h("section", { class: "panel" }, h("h2", {}, "Events"), h("div", { class: "scroll" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Time"), h("th", {}, "Kind"), h("th", {}, "Detail"))), events))));
  showFacts();
  if (fromAudit) { for (const ev of job._events) onEvent(ev); return; }
  leave.push(follow(id, onEvent, (err) => { if (err) toast(err.message); }));
  // The state can change without an event the stream shows first (a
  // cancel requested): read it now and then too.
  const timer = setInterval(async () => {
    if (TERMINAL.has(state.state)) return;
    try { const j = await api("/v1/jobs/" + encodeURIComponent(id)); if (j.state !== state.state && !TERMINAL.has(state.state)) { state.state = j.state; showFacts(); } } catch (e) { /* the stream says */ }
  }, 2000);
  leave.push(() => clearInterval(timer));
}

// --- jobs list and chart -----------------------------------------------

// chart draws the counts at the box's own width, so that its text is
// the page's size on a phone as on a desktop.
function chart(buckets, since, width) {
  const minutes = Math.max(1, Math.round((Date.now() - new Date(since)) / 60000));
  const start = new Date(since).getTime();
  const cols = new Map();
  let max = 1;
  for (const b of buckets) {
    const i = Math.floor((new Date(b.minute).getTime() - start) / 60000);
    if (i < 0 || i >= minutes) continue;
    const c = cols.get(i) || {};
    c[b.state] = (c[b.state] || 0) + b.count;
    cols.set(i, c);
    max = Math.max(max, Object.values(c).reduce((a, x) => a + x, 0));
  }
  const W = Math.max(280, Math.round(width || 960)), H = 160, pad = 24, bw = (W - pad) / minutes;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H + 20}`, role: "img", "aria-label": "Jobs per minute by state over the last " + Math.round(minutes / 60) + " hours" });
  s.append(svg("line", { x1: pad, y1: H, x2: W, y2: H, stroke: "#8c959f" }));
  const top = svg("text", { x: 0, y: 12, "font-size": 11, fill: "#59636e" }); top.textContent = String(max); s.append(top);
  for (const [i, c] of cols) {
    let y = H;
    for (const st of STATES) {
      if (!c[st]) continue;
      const hgt = (c[st] / max) * (H - 10);
      y -= hgt;
      const r = svg("rect", { x: pad + i * bw, y, width: Math.max(bw - 1, 1), height: hgt, fill: COLORS[st] });
      const t = svg("title", {}); t.textContent = `${new Date(start + i * 60000).toLocaleTimeString()}: ${c[st]} ${st}`;
      r.append(t); s.append(r);
    }
  }
  const step = W < 600 ? 120 : 60; // room for each label
  for (let m = 0; m <= minutes - 30; m += step) {
    const t = svg("text", { x: pad + m * bw, y: H + 15, "font-size": 11, fill: "#59636e" });
    t.textContent = new Date(start + m * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    s.append(t);
  }
  return s;
}

function jobRow(j) {
  return h("tr", { "data-job": j.job_id }, h("td", { class: "mono jobid" }, h("a", { href: "#/jobs/" + j.job_id, title: j.job_id }, j.job_id)),
    h("td", { class: "mono" }, j.command || ""), h("td", { class: "hide-narrow" }, j.principal || ""), h("td", {}, stateBadge(j.state)),
    h("td", { class: "hide-narrow" }, j.queue || ""), h("td", { class: "hide-narrow" }, fmtTime(j.created_at)),
    h("td", { class: "hide-narrow" }, j.started_at ? duration(j.started_at, j.finished_at) : ""));
}

function jobsTable(body) {
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Command"), h("th", { class: "hide-narrow" }, "Principal"),
    h("th", {}, "State"), h("th", { class: "hide-narrow" }, "Queue"), h("th", { class: "hide-narrow" }, "Created"), h("th", { class: "hide-narrow" }, "Duration"))), body));
}

function filterField(id, label, input) {
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

async function viewJobs(query) {
  const state = h("select", {}, [["", "all"], ["active", "queued or running"], ["finished", "finished"]].concat(STATES.map((s) => [s, s]))
    .map(([v, l]) => h("option", { value: v, selected: query.get("state") === v }, l)));
  const principal = h("input", { type: "search", value: query.get("principal") || "" });
  const command = h("input", { type: "search", value: query.get("command") || "" });
  const queue = h("input", { type: "search", value: query.get("queue") || "" });
  const hours = h("select", {}, [1, 3, 6, 12, 24].map((n) => h("option", { value: n, selected: String(n) === (query.get("hours") || "3") }, n + " h")));
  const body = h("tbody", { id: "jobs" });
  const chartBox = h("div", { class: "chart" });
  const status = h("p", { class: "muted", role: "status" });
  const apply = (e) => {
    if (e) e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of [["state", state], ["principal", principal], ["command", command], ["queue", queue], ["hours", hours]]) if (el.value) q.set(k, el.value);
    location.hash = "#/jobs?" + q.toString();
  };
  show(h("h1", {}, "Jobs"),
    h("section", { class: "panel" }, h("h2", {}, "Jobs per minute"), chartBox,
      h("div", { class: "legend", "aria-hidden": "true" }, STATES.map((s) => h("span", { class: "sw-" + s }, s))),
      h("div", { class: "row" }, filterField("f-hours", "Over the last", hours))),
    h("form", { class: "filters", onsubmit: apply, role: "search" },
      filterField("f-state", "State", state), filterField("f-principal", "Principal", principal),
      filterField("f-command", "Command", command), filterField("f-queue", "Queue", queue),
      h("button", { type: "submit" }, "Filter")),
    h("section", { class: "panel" }, status, jobsTable(body)));
  hours.addEventListener("change", apply);
  const listQuery = new URLSearchParams(query);
  listQuery.delete("hours");
  async function refresh() {
    try {
      const list = await api("/v1/jobs?" + listQuery.toString());
      body.replaceChildren(...list.jobs.map(jobRow));
      status.textContent = list.jobs.length + " jobs" + (list.truncated ? " (more match: narrow the filters)" : "") + " · updated " + new Date().toLocaleTimeString();
      const per = await api("/v1/stats/jobs-per-minute?hours=" + (query.get("hours") || "3"));
      chartBox.replaceChildren(chart(per.buckets, per.since, chartBox.clientWidth));
    } catch (x) { status.replaceChildren(problemBox(x)); }
  }
  await refresh();
  const timer = setInterval(refresh, 2000);
  leave.push(() => clearInterval(timer));
}

// --- audit -------------------------------------------------------------

async function viewAudit(query) {
  const fields = [["principal", "Principal"], ["command", "Command"], ["module", "Module"], ["queue", "Queue"],
    ["schedule", "Schedule"], ["parent", "Fan-out (parent job)"], ["job", "Job id"], ["since", "Since (24h, 7d or a time)"], ["until", "Until"], ["grep", "Output contains"], ["limit", "Limit"]];
  const inputs = {};
  for (const [k] of fields) inputs[k] = h("input", { type: "search", value: query.get(k) || (k === "since" ? "7d" : k === "limit" ? "50" : "") });
  inputs.status = h("select", {}, h("option", { value: "" }, "any"), STATES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s)));
  const body = h("tbody", { id: "audit" });
  const status = h("div", { role: "status", class: "muted" });
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(inputs)) if (el.value) q.set(k, el.value);
    location.hash = "#/audit?" + q.toString();
  } },
  fields.map(([k, l]) => filterField("a-" + k, l, inputs[k])), filterField("a-status", "Status", inputs.status),
  h("button", { type: "submit", class: "primary" }, "Search"));
  show(h("h1", {}, "Audit"), me.audit ? null : h("p", { class: "problem" }, "This gateway has no audit store (WINCH_CLICKHOUSE_DSN)."),
    form, h("section", { class: "panel" }, status, jobsTable(body)));
  if (!me.audit) return;
  const q = new URLSearchParams(query);
  if (!q.has("since")) q.set("since", "7d");
  try {
    const res = await api("/v1/audit/jobs?" + q.toString());
    body.replaceChildren(...res.jobs.map((j) => jobRow(Object.assign({}, j, { started_at: j.started_at || null }))));
    status.textContent = res.jobs.length + " jobs";
  } catch (x) { status.replaceChildren(problemBox(x)); }
}

// --- router ------------------------------------------------------------

async function route() {
  if (!toast.keep) document.getElementById("toast").hidden = true; // it was about the page left
  toast.keep = false;
  for (const stop of leave) stop();
  leave = [];
  const hash = location.hash || "#/run";
  const [path, qs] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  const query = new URLSearchParams(qs || "");
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === parts[0]) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!token() || parts[0] === "signin") { viewSignIn(); return; }
  try {
    if (!me) { me = await api("/v1/whoami"); renderWho(); }
    switch (parts[0]) {
      case "jobs": await (parts[1] ? viewJob(decodeURIComponent(parts[1])) : viewJobs(query)); break;
      case "audit": await viewAudit(query); break;
      default: await viewRun(parts[1] ? decodeURIComponent(parts[1]) : "");
    }
    document.title = "winch · " + (parts[0] || "run");
  } catch (x) {
    if (token()) show(h("h1", {}, "Something went wrong"), problemBox(x));
  }
}

document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
