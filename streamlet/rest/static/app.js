/* streamlet web dashboard: one page over the REST API (docs/operations.md, docs/rest.md).
 *
 * No framework and no build step: this file is served as it is from the package.  Routes are
 * URL fragments (#/, #/jobs/<id>, #/submit); every page polls what it shows every POLL_MS (at
 * most every 2 s, as the issue asks) and redraws in place.  The job graph and the flame graph
 * are SVG drawn here.  With security.auth.token set, the page asks for the token once and
 * keeps it in sessionStorage.
 */
"use strict";

const POLL_MS = 2000;
const TOKEN_KEY = "streamlet-token";
const NO_WATERMARK = -9.2e18; // below this a watermark is Long.MIN_VALUE: none yet
const SVG_NS = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------------------------------------
// helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmtTime(ms) {
  if (!ms || ms < 0) return "-";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return "-";
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = Math.floor(ms / 1000);
  if (s < 60) return (ms / 1000).toFixed(1) + " s";
  const m = Math.floor(s / 60), h = Math.floor(m / 60);
  if (h > 0) return `${h} h ${m % 60} min`;
  return `${m} min ${s % 60} s`;
}

function fmtNum(n) {
  if (n === null || n === undefined) return "-";
  if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function fmtBytes(b) {
  if (b === null || b === undefined || b < 0) return "-";
  if (b >= 1 << 30) return (b / (1 << 30)).toFixed(2) + " GiB";
  if (b >= 1 << 20) return (b / (1 << 20)).toFixed(1) + " MiB";
  if (b >= 1 << 10) return (b / (1 << 10)).toFixed(1) + " KiB";
  return b + " B";
}

function pct(msPerSecond) {
  return msPerSecond === null || msPerSecond === undefined ? "-" : Math.round(msPerSecond / 10) + " %";
}

function badge(state) {
  return el("span", { class: "badge s-" + String(state).toLowerCase(), "data-state": state }, state);
}

function shortId(id) {
  return id ? id.slice(0, 8) : "-";
}

function levelOf(ratio) { // Flink's thresholds (rest/schemas.py backpressure_level)
  if (ratio < 0.10) return "ok";
  if (ratio <= 0.5) return "low";
  return "high";
}

// ---------------------------------------------------------------------------------------------
// the API

class ApiError extends Error {
  constructor(status, body) {
    const errors = (body && body.errors) || [String(status)];
    super(errors.join("; "));
    this.status = status;
    this.body = body;
  }
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  let body = null;
  const text = await resp.text();
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { errors: [text] }; }
  if (resp.status === 401) {
    showTokenPrompt();
    throw new ApiError(401, body);
  }
  if (!resp.ok) throw new ApiError(resp.status, body);
  return body;
}

function showTokenPrompt() {
  if (document.getElementById("token-form")) return;
  const input = el("input", { type: "password", id: "token-input", placeholder: "security.auth.token" });
  const form = el("form", { id: "token-form", class: "card warn",
                            onsubmit: (ev) => { ev.preventDefault(); sessionStorage.setItem(TOKEN_KEY, input.value);
                                                form.remove(); route(); } },
                  el("b", {}, "This JobManager wants a token. "), input, el("button", { type: "submit" }, "Use it"));
  document.getElementById("main").prepend(form);
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = bad ? "bad" : "muted";
}

// ---------------------------------------------------------------------------------------------
// polling: one page at a time; a route change ends the old page's loop

let generation = 0;

function poll(fn) {
  const gen = ++generation;
  let timer = null;
  const tick = async () => {
    if (gen !== generation) return;
    try {
      await fn();
      setStatus("updated " + new Date().toLocaleTimeString());
    } catch (e) {
      if (gen === generation) setStatus(String(e.message || e), true);
    }
    if (gen === generation) timer = setTimeout(tick, POLL_MS);
  };
  tick();
  return () => { if (timer) clearTimeout(timer); };
}

function alive(gen) { return gen === generation; }

// ---------------------------------------------------------------------------------------------
// the job graph (SVG): vertices in layers by longest path from a source, edges with partitioners

const NODE_W = 250, NODE_H = 118, GAP_X = 90, GAP_Y = 26;

function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const layer = new Map();
  const depth = (n, seen) => {
    if (layer.has(n.id)) return layer.get(n.id);
    if (seen.has(n.id)) return 0;
    seen.add(n.id);
    let d = 0;
    for (const i of n.inputs || []) {
      const src = byId.get(i.id);
      if (src) d = Math.max(d, depth(src, seen) + 1);
    }
    layer.set(n.id, d);
    return d;
  };
  nodes.forEach((n) => depth(n, new Set()));
  const columns = [];
  for (const n of nodes) {
    const d = layer.get(n.id);
    (columns[d] = columns[d] || []).push(n);
  }
  const pos = new Map();
  const tallest = Math.max(...columns.map((c) => c.length), 1);
  const height = tallest * (NODE_H + GAP_Y) + GAP_Y;
  columns.forEach((col, x) => {
    const top = (height - col.length * (NODE_H + GAP_Y)) / 2 + GAP_Y / 2;
    col.forEach((n, y) => pos.set(n.id, { x: 20 + x * (NODE_W + GAP_X), y: top + y * (NODE_H + GAP_Y) }));
  });
  return { pos, width: 40 + columns.length * (NODE_W + GAP_X) - GAP_X, height };
}

function truncate(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

/* plan: Flink's plan JSON; stats(vertexId) -> {lines: [..], level} or null; onPick(vertexId). */
function drawGraph(plan, stats, onPick, selected) {
  const nodes = plan.nodes || [];
  const { pos, width, height } = layout(nodes);
  const root = svg("svg", { class: "jobgraph", width, height, viewBox: `0 0 ${width} ${height}`,
                            role: "img", "aria-label": "job graph" });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
                                             markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
                                  svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }))));
  for (const n of nodes) {
    for (const i of n.inputs || []) {
      const a = pos.get(i.id), b = pos.get(n.id);
      if (!a || !b) continue;
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
      const mx = (x1 + x2) / 2;
      root.append(svg("path", { class: "edge", d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
                                "marker-end": "url(#arrow)" }));
      root.append(svg("text", { class: "edge-label", x: mx, y: (y1 + y2) / 2 - 6, "text-anchor": "middle" },
                      i.ship_strategy));
    }
  }
  for (const n of nodes) {
    const p = pos.get(n.id);
    const s = stats ? stats(n.id) : null;
    const level = s ? s.level : "none";
    const ops = (n.operators || []).map((o) => o.id).join(" → ");
    const g = svg("g", { class: `vertex bp-${level}` + (selected === n.id ? " selected" : ""),
                         transform: `translate(${p.x},${p.y})`, "data-vertex": n.id,
                         onclick: onPick ? () => onPick(n.id) : null });
    g.append(svg("title", {}, `${n.description}\nparallelism ${n.parallelism}` +
                               (s ? `\nback pressure: ${level}` : "")));
    g.append(svg("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8 }));
    g.append(svg("text", { x: 10, y: 19, class: "vname" }, truncate(ops || n.description, 34)));
    g.append(svg("text", { x: NODE_W - 10, y: 19, class: "vpar", "text-anchor": "end" }, "p=" + n.parallelism));
    const lines = s ? s.lines : [(n.operators || []).map((o) => o.kind).join(" → ")];
    lines.forEach((line, i) => g.append(svg("text", { x: 10, y: 40 + i * 16, class: "vstat" }, line)));
    root.append(g);
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// the flame graph (SVG icicle: root on top, a frame's width = its samples)

function drawFlameGraph(data, width) {
  const ROW = 18;
  let depth = 0;
  const walk = (n, d) => { depth = Math.max(depth, d); (n.children || []).forEach((c) => walk(c, d + 1)); };
  walk(data, 0);
  const height = (depth + 1) * ROW + 2;
  const root = svg("svg", { class: "flamegraph", width, height, viewBox: `0 0 ${width} ${height}`,
                            role: "img", "aria-label": "flame graph" });
  const total = data.value || 1;
  const hue = (name) => { let h = 0; for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360; return h; };
  const draw = (n, x, d) => {
    const w = (n.value / total) * width;
    if (w < 0.5) return;
    const g = svg("g", { class: "frame", transform: `translate(${x},${d * ROW})` });
    const share = ((n.value / total) * 100).toFixed(1);
    g.append(svg("title", {}, `${n.name}\n${n.value} sample(s), ${share} %`));
    g.append(svg("rect", { width: Math.max(w - 1, 0.5), height: ROW - 1,
                           fill: d === 0 ? "#999" : `hsl(${20 + hue(n.name) % 40}, 85%, ${55 + hue(n.name) % 20}%)` }));
    if (w > 40) g.append(svg("text", { x: 3, y: 13 }, truncate(n.name, Math.floor(w / 6.5))));
    root.append(g);
    let cx = x;
    for (const c of n.children || []) { draw(c, cx, d + 1); cx += (c.value / total) * width; }
  };
  draw(data, 0, 0);
  return root;
}

// ---------------------------------------------------------------------------------------------
// overview page

function overviewPage(main) {
  const summary = el("div", { class: "cards", id: "cluster" });
  const tms = el("table", { id: "taskmanagers" });
  const jobs = el("table", { id: "jobs" });
  main.replaceChildren(
    el("h1", {}, "Cluster"), summary,
    el("h2", {}, "TaskManagers"), tms,
    el("h2", {}, "Jobs ", el("a", { href: "#/submit", class: "button" }, "Submit a job")), jobs);
  return poll(async () => {
    const [ov, tm, jo] = await Promise.all([api("/overview"), api("/taskmanagers"), api("/jobs/overview")]);
    summary.replaceChildren(
      card("TaskManagers", ov.taskmanagers), card("Slots", `${ov["slots-total"] - ov["slots-available"]} / ${ov["slots-total"]} used`),
      card("Running jobs", ov["jobs-running"]), card("Finished", ov["jobs-finished"]),
      card("Canceled", ov["jobs-cancelled"]), card("Failed", ov["jobs-failed"]), card("Version", ov["streamlet-version"]));
    tms.replaceChildren(
      el("tr", {}, ["Id", "Address", "Slots used / total", "Last heartbeat", "RSS", "CPU"].map((h) => el("th", {}, h))),
      ...tm.taskmanagers.map((t) => el("tr", { "data-tm": t.id },
        el("td", { title: t.id }, shortId(t.id)), el("td", {}, t.address),
        el("td", {}, `${t.slotsNumber - t.freeSlots} / ${t.slotsNumber}`),
        el("td", {}, fmtDuration(t.timeSinceLastHeartbeat) + " ago"),
        el("td", { class: "num" }, fmtBytes(t.memoryRss)),
        el("td", { class: "num" }, t.cpuLoad === null || t.cpuLoad === undefined ? "-" : Math.round(t.cpuLoad * 100) + " %"))));
    const rows = jo.jobs.slice().sort((a, b) => b["start-time"] - a["start-time"]);
    jobs.replaceChildren(
      el("tr", {}, ["Name", "Id", "State", "Start", "Duration", "Restarts", "Tasks"].map((h) => el("th", {}, h))),
      ...rows.map((j) => el("tr", { "data-job": j.jid },
        el("td", {}, el("a", { href: "#/jobs/" + j.jid }, j.name)), el("td", { class: "mono" }, shortId(j.jid)),
        el("td", {}, badge(j.state)), el("td", {}, fmtTime(j["start-time"])), el("td", {}, fmtDuration(j.duration)),
        el("td", { class: "num" }, j.numRestarts || 0),
        el("td", {}, `${j.tasks.running} running / ${j.tasks.total}`))));
    if (!rows.length) jobs.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no jobs yet")));
  });
}

function card(label, value) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

// ---------------------------------------------------------------------------------------------
// job page

const TERMINAL = ["FINISHED", "FAILED", "CANCELED", "SUSPENDED"];

function jobPage(main, jid) {
  const state = { selected: null, flame: null, vertexData: {}, bp: {}, wm: {} };
  const header = el("div", { id: "job-header" });
  const actions = el("div", { class: "actions" },
    el("button", { id: "btn-cancel", class: "danger", onclick: () => act("cancel") }, "Cancel"),
    el("button", { id: "btn-stop", onclick: () => act("stop") }, "Stop with savepoint"),
    el("button", { id: "btn-checkpoint", onclick: () => act("checkpoint") }, "Trigger checkpoint"));
  const message = el("div", { id: "action-message", class: "muted" });
  const graph = el("div", { id: "graph", class: "scroll" });
  const subtasks = el("div", { id: "subtasks" });
  const flame = el("div", { id: "flame" });
  const exceptions = el("div", { id: "exceptions" });
  const checkpoints = el("div", { id: "checkpoints" });
  main.replaceChildren(header, actions, message, el("h2", {}, "Job graph"),
                       el("p", { class: "muted" }, "Click a vertex for its subtasks and flame graph. Colour: back pressure ",
                          el("span", { class: "key bp-ok" }, "ok"), el("span", { class: "key bp-low" }, "low"),
                          el("span", { class: "key bp-high" }, "high"), "."),
                       graph, subtasks, flame, el("h2", {}, "Checkpoints"), checkpoints,
                       el("h2", {}, "Exceptions"), exceptions);
  const gen = generation + 1;

  async function act(what) {
    // every action is confirmed; the stop asks where the savepoint goes (its OK is the confirmation)
    let target = null;
    if (what === "stop") {
      target = window.prompt("Stop this job with a savepoint? Savepoint directory " +
                             "(empty: the JobManager's execution.checkpointing.savepoint-dir):", "");
      if (target === null) return;
    } else if (!window.confirm(what === "cancel" ? "Cancel this job?" : "Trigger a checkpoint now?")) {
      return;
    }
    try {
      if (what === "cancel") {
        await api(`/jobs/${jid}?mode=cancel`, { method: "PATCH" });
        message.textContent = "cancelling…";
      } else if (what === "stop") {
        const r = await api(`/jobs/${jid}/stop`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                    body: JSON.stringify(target ? { targetDirectory: target, drain: false }
                                                                                : { drain: false }) });
        message.textContent = "stopping with a savepoint…";
        followOperation(`/jobs/${jid}/savepoints/${r["request-id"]}`, "savepoint");
      } else {
        const r = await api(`/jobs/${jid}/checkpoints`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                           body: "{}" });
        message.textContent = "checkpoint triggered…";
        followOperation(`/jobs/${jid}/checkpoints/${r["request-id"]}`, "checkpoint");
      }
      message.className = "";
    } catch (e) {
      message.textContent = `${what} failed: ${e.message}`;
      message.className = "bad";
    }
  }

  async function followOperation(path, what) {
    for (let i = 0; i < 150 && alive(gen); i++) {
      await new Promise((r) => setTimeout(r, POLL_MS));
      let r;
      try { r = await api(path); } catch (e) { message.textContent = `${what} failed: ${e.message}`; message.className = "bad"; return; }
      if (r.status && r.status.id === "COMPLETED") {
        const op = r.operation || {};
        if (op["failure-cause"]) {
          message.textContent = `${what} failed: ${op["failure-cause"]["stack-trace"] || op["failure-cause"].class}`;
          message.className = "bad";
        } else {
          message.textContent = `${what} completed` + (op.location ? ": " + op.location : "");
          message.className = "good";
        }
        return;
      }
    }
  }

  function pick(vid) {
    state.selected = state.selected === vid ? null : vid;
    state.flame = null;
    flame.replaceChildren();
    render();
  }

  let last = null;

  function vertexStats(vid) {
    if (!last) return null;
    const v = last.vertices.find((x) => x.id === vid);
    if (!v) return null;
    const m = v.metrics;
    const bp = state.bp[vid];
    const ratio = bp ? Math.max(0, ...bp.subtasks.map((s) => s.ratio)) : m["backpressured-time-ms-per-second"] / 1000;
    const wm = state.wm[vid];
    const lines = [
      `${v.status}  in ${fmtNum(m["read-records"])}  out ${fmtNum(m["write-records"])}`,
      `${fmtNum(m["read-records-per-second"])}/s in  ${fmtNum(m["write-records-per-second"])}/s out`,
      `busy ${pct(m["busy-time-ms-per-second"])}  idle ${pct(m["idle-time-ms-per-second"])}  bp ${pct(m["backpressured-time-ms-per-second"])}`,
      wm ? `watermark ${wm.text}` : "watermark -",
      wm && wm.lag !== null ? `lag ${fmtDuration(wm.lag)}` : "",
    ];
    return { lines, level: bp ? bp["backpressure-level"] : levelOf(ratio) };
  }

  function watermarkOf(list, now) {
    // the vertex's input watermark: the minimum over its subtasks (Flink's web UI shows the same)
    const inputs = list.filter((w) => w.id.endsWith(".currentInputWatermark")).map((w) => Number(w.value));
    const outputs = list.filter((w) => w.id.endsWith(".currentOutputWatermark")).map((w) => Number(w.value));
    const use = inputs.some((x) => x > NO_WATERMARK) ? inputs : outputs;
    const known = use.filter((x) => x > NO_WATERMARK);
    if (!known.length) return { text: "none yet", lag: null };
    const wm = Math.min(...known);
    if (wm >= 9.2e18) return { text: "end of input", lag: null };
    return { text: fmtTime(wm), lag: Math.max(0, now - wm) };
  }

  function render() {
    if (!last) return;
    const j = last;
    header.replaceChildren(
      el("h1", {}, j.name, " ", badge(j.state)),
      el("div", { class: "cards" }, card("Job id", j.jid), card("Start", fmtTime(j["start-time"])),
         card("Duration", fmtDuration(j.duration)), card("Restarts", j.numRestarts || 0),
         card("Type", j["job-type"]), card("Max parallelism", j.maxParallelism)),
      j["pending-reason"] ? el("p", { class: "warn" }, j["pending-reason"]) : "");
    const done = TERMINAL.includes(j.state);
    for (const b of actions.querySelectorAll("button")) b.disabled = done;
    graph.replaceChildren(drawGraph(j.plan, vertexStats, pick, state.selected));
    renderSubtasks();
  }

  function renderSubtasks() {
    const vid = state.selected;
    if (!vid || !state.vertexData[vid]) { subtasks.replaceChildren(); return; }
    const v = state.vertexData[vid];
    const bp = state.bp[vid];
    subtasks.replaceChildren(
      el("h2", {}, "Subtasks of ", el("span", { class: "mono" }, v.name)),
      el("table", { id: "subtask-table" },
        el("tr", {}, ["#", "Status", "Attempt", "TaskManager", "Records in", "Records out", "In/s", "Out/s",
                      "Busy", "Idle", "Back pressure", "Duration"].map((h) => el("th", {}, h))),
        ...v.subtasks.map((s) => {
          const m = s.metrics;
          const level = bp && bp.subtasks[s.subtask] ? bp.subtasks[s.subtask]["backpressure-level"] : "";
          return el("tr", { "data-subtask": s.subtask },
            el("td", {}, s.subtask), el("td", {}, badge(s.status)), el("td", {}, s.attempt),
            el("td", { title: s["taskmanager-id"] || "" }, `${shortId(s["taskmanager-id"])} ${s.host || ""}`),
            el("td", { class: "num" }, fmtNum(m["read-records"])), el("td", { class: "num" }, fmtNum(m["write-records"])),
            el("td", { class: "num" }, fmtNum(m["read-records-per-second"])),
            el("td", { class: "num" }, fmtNum(m["write-records-per-second"])),
            el("td", { class: "num" }, pct(m["busy-time-ms-per-second"])), el("td", { class: "num" }, pct(m["idle-time-ms-per-second"])),
            el("td", { class: "num bp-" + level }, pct(m["backpressured-time-ms-per-second"]) + (level ? ` (${level})` : "")),
            el("td", {}, fmtDuration(s.duration)));
        })));
    if (!flame.firstChild) renderFlameControls(vid);
  }

  function renderFlameControls(vid) {
    const kind = el("select", { id: "flame-type" }, ["FULL", "ON_CPU", "OFF_CPU"].map((t) => el("option", { value: t }, t)));
    const out = el("div", { id: "flame-graph", class: "scroll" });
    const btn = el("button", { id: "btn-flame", onclick: () => loadFlame(vid, kind.value, out) }, "Sample flame graph");
    kind.addEventListener("change", () => { if (state.flame) loadFlame(vid, kind.value, out); });
    flame.replaceChildren(el("h2", {}, "Flame graph"),
      el("p", { class: "muted" }, "Python stacks of this vertex's subtasks, sampled for a few seconds on their ",
         "TaskManagers (on-CPU: running on the event loop; off-CPU: suspended in an await)."),
      el("div", { class: "actions" }, kind, btn), out);
  }

  async function loadFlame(vid, kind, out) {
    state.flame = vid;
    out.replaceChildren(el("p", { class: "muted", id: "flame-status" }, "sampling…"));
    for (let i = 0; i < 60 && alive(gen) && state.flame === vid; i++) {
      let r;
      try { r = await api(`/jobs/${jid}/vertices/${vid}/flamegraph?type=${kind}`); }
      catch (e) { out.replaceChildren(el("p", { class: "bad" }, e.message)); return; }
      if (r.data) {
        out.replaceChildren(el("p", { class: "muted", id: "flame-status" },
                               `${r.data.value} sample(s), taken until ${fmtTime(r.endTimestamp)}`),
                            drawFlameGraph(r.data, Math.max(600, out.clientWidth || 900)));
        return;
      }
      const why = { "-1": "the vertex is not running", "-2": "flame graphs are disabled (rest.flamegraph.enabled)" }[r.endTimestamp];
      if (why) { out.replaceChildren(el("p", { class: "muted", id: "flame-status" }, why)); return; }
      await new Promise((res) => setTimeout(res, POLL_MS));
    }
  }

  function renderCheckpoints(c) {
    if (!c) { checkpoints.replaceChildren(el("p", { class: "muted" }, "no checkpoint information")); return; }
    const k = c.counts || {};
    const latest = (c.latest || {}).completed;
    const rows = (c.history || []).slice(0, 10);
    const parts = [
      el("div", { class: "cards" }, card("Completed", k.completed || 0), card("Failed", k.failed || 0),
         card("In progress", k.in_progress || 0), card("Restored", k.restored || 0),
         card("Last", latest ? `#${latest.id} at ${fmtTime(latest.latest_ack_timestamp || latest.trigger_timestamp)}` : "-"),
         card("Last duration", latest ? fmtDuration(latest.end_to_end_duration) : "-"),
         card("Last size", latest ? fmtBytes(latest.state_size) : "-"),
         card("Last incremental size", latest ? fmtBytes(latest.checkpointed_size) : "-"),
         card("Last alignment", latest ? fmtDuration(latest.alignment_duration) : "-")),
      el("table", { id: "checkpoint-history" },
        el("tr", {}, ["#", "Status", "Type", "Triggered", "Duration", "Size", "Incremental", "Acknowledged"].map((h) => el("th", {}, h))),
        ...rows.map((h) => el("tr", {},
          el("td", {}, h.id), el("td", {}, badge(h.status)), el("td", {}, h.is_savepoint ? "savepoint" : "checkpoint"),
          el("td", {}, fmtTime(h.trigger_timestamp)), el("td", {}, fmtDuration(h.end_to_end_duration)),
          el("td", { class: "num" }, fmtBytes(h.state_size)), el("td", { class: "num" }, fmtBytes(h.checkpointed_size)),
          el("td", {}, `${h.num_acknowledged_subtasks} / ${h.num_subtasks}`, h.failure_message ? el("div", { class: "bad" }, h.failure_message) : "")))),
    ];
    if (!rows.length) parts.push(el("p", { class: "muted" }, "no checkpoint taken yet"));
    if (latest && latest.tasks) parts.push(el("h3", {}, `Subtasks of checkpoint #${latest.id}`), timeline(latest.tasks));
    checkpoints.replaceChildren(...parts);
  }

  function timeline(tasks) {
    // one bar per subtask: alignment, synchronous and asynchronous part, on one time scale
    const names = new Map((last ? last.vertices : []).map((v) => [v.id, v.name]));
    const rows = [];
    for (const [vid, list] of Object.entries(tasks)) for (const t of list) rows.push({ vid, ...t });
    const max = Math.max(1, ...rows.map((r) => (r.alignment_ms || 0) + (r.sync_ms || 0) + (r.async_ms || 0)));
    const W = 360;
    return el("table", { id: "checkpoint-timeline" },
      el("tr", {}, ["Vertex", "#", "Alignment", "Sync", "Async", "Size", "Timeline"].map((h) => el("th", {}, h))),
      ...rows.map((r) => {
        const a = (r.alignment_ms || 0) / max * W, s = (r.sync_ms || 0) / max * W, y = (r.async_ms || 0) / max * W;
        return el("tr", {},
          el("td", {}, truncate(names.get(r.vid) || r.vid, 40)), el("td", {}, r.index),
          el("td", { class: "num" }, (r.alignment_ms || 0).toFixed(1) + " ms"), el("td", { class: "num" }, (r.sync_ms || 0).toFixed(1) + " ms"),
          el("td", { class: "num" }, (r.async_ms || 0).toFixed(1) + " ms"), el("td", { class: "num" }, fmtBytes(r.state_size)),
          el("td", {}, svg("svg", { width: W, height: 12, class: "bars" },
            svg("rect", { x: 0, width: a, height: 12, class: "t-align" }),
            svg("rect", { x: a, width: s, height: 12, class: "t-sync" }),
            svg("rect", { x: a + s, width: y, height: 12, class: "t-async" }))));
      }));
  }

  function renderExceptions(x) {
    const entries = (x.exceptionHistory && x.exceptionHistory.entries) || [];
    if (!entries.length) { exceptions.replaceChildren(el("p", { class: "muted" }, "no exceptions")); return; }
    exceptions.replaceChildren(el("table", { id: "exception-table" },
      el("tr", {}, ["Time", "Subtask", "Location", "Message"].map((h) => el("th", {}, h))),
      ...entries.map((e) => el("tr", {}, el("td", {}, fmtTime(e.timestamp)), el("td", {}, e.taskName || "-"),
                               el("td", {}, e.endpoint || "-"), el("td", {}, el("pre", {}, e.stacktrace))))));
  }

  return poll(async () => {
    const j = await api(`/jobs/${jid}`);
    const [x, c] = await Promise.all([api(`/jobs/${jid}/exceptions`),
                                      api(`/jobs/${jid}/checkpoints`).catch(() => null)]);
    const per = await Promise.all(j.vertices.map(async (v) => {
      const [bp, wm, details] = await Promise.all([
        api(`/jobs/${jid}/vertices/${v.id}/backpressure`).catch(() => null),
        api(`/jobs/${jid}/vertices/${v.id}/watermarks`).catch(() => null),
        state.selected === v.id ? api(`/jobs/${jid}/vertices/${v.id}`) : Promise.resolve(null)]);
      return { v, bp, wm, details };
    }));
    for (const { v, bp, wm, details } of per) {
      state.bp[v.id] = bp;
      state.wm[v.id] = wm ? watermarkOf(wm, j.now) : null;
      if (details) state.vertexData[v.id] = details;
    }
    last = j;
    render();
    renderCheckpoints(c);
    renderExceptions(x);
  });
}

// ---------------------------------------------------------------------------------------------
// submit page

const EXAMPLE = `name: example
parallelism: 2
sources:
  numbers: {type: datagen, rate: 2000, fields: {n: {kind: sequence}, v: {kind: random, max: 100}}}
transforms:
  doubled: {input: numbers, map: "dict(r, v=r['v'] * 2)"}
  per_key: {input: doubled, key_by: "r['n'] % 10", aggregate: {count: count, total: {sum: v}}}
sinks:
  out: {input: per_key, type: blackhole}
`;

function submitPage(main) {
  generation++; // no polling here: validation runs as the text changes
  const gen = generation;
  const name = el("input", { id: "filename", value: "pipeline.yaml", size: 24 });
  const text = el("textarea", { id: "yaml", rows: 22, cols: 90, spellcheck: "false" }, EXAMPLE);
  const file = el("input", { id: "upload", type: "file", accept: ".yaml,.yml,text/yaml" });
  const errors = el("div", { id: "validation" });
  const plan = el("div", { id: "plan", class: "scroll" });
  const submit = el("button", { id: "btn-submit", class: "primary", disabled: true }, "Submit");
  const result = el("div", { id: "submit-result" });
  main.replaceChildren(el("h1", {}, "Submit a pipeline"),
    el("p", { class: "muted" }, "Paste a pipeline YAML or upload a file; it is validated as you type ",
       "(POST /jobs/validate) and its plan drawn below."),
    el("div", { class: "actions" }, el("label", {}, "File name ", name), el("label", {}, "Upload ", file)),
    text, el("div", { class: "actions" }, submit), result, errors, el("h2", {}, "Plan"), plan);

  let timer = null, seq = 0;
  const validate = async () => {
    const mine = ++seq;
    submit.disabled = true;
    try {
      const r = await api(`/jobs/validate?filename=${encodeURIComponent(name.value || "pipeline.yaml")}`,
                          { method: "POST", headers: { "Content-Type": "application/x-yaml" }, body: text.value });
      if (mine !== seq || !alive(gen)) return;
      errors.replaceChildren(el("p", { class: "good", id: "valid" }, "valid: " + r.plan.nodes.length + " vertices"));
      plan.replaceChildren(drawGraph(r.plan, null, null, null));
      submit.disabled = false;
    } catch (e) {
      if (mine !== seq || !alive(gen)) return;
      const details = (e.body && e.body.details) || [];
      errors.replaceChildren(el("div", { class: "errors", id: "invalid" },
        details.length ? details.map((d) => el("div", { class: "error" },
            d.file ? el("span", { class: "where" }, d.file) : "",
            d.node ? el("span", { class: "where node" }, "node " + d.node) : "",
            d.key ? el("span", { class: "where key" }, "key " + d.key) : (d.path && !d.node ? el("span", { class: "where key" }, d.path) : ""),
            el("span", { class: "message" }, d.message)))
          : el("div", { class: "error" }, el("span", { class: "message" }, e.message))));
      plan.replaceChildren();
    }
  };
  const soon = () => { clearTimeout(timer); timer = setTimeout(validate, 400); };
  text.addEventListener("input", soon);
  name.addEventListener("input", soon);
  file.addEventListener("change", () => {
    const f = file.files[0];
    if (!f) return;
    name.value = f.name;
    f.text().then((t) => { text.value = t; validate(); });
  });
  submit.addEventListener("click", async () => {
    submit.disabled = true;
    try {
      const r = await api(`/jobs?filename=${encodeURIComponent(name.value || "pipeline.yaml")}`,
                          { method: "POST", headers: { "Content-Type": "application/x-yaml" }, body: text.value });
      location.hash = "#/jobs/" + r.jid;
    } catch (e) {
      result.replaceChildren(el("p", { class: "bad" }, "submission failed: " + e.message));
      submit.disabled = false;
    }
  });
  validate();
  return () => clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// router

let stopPage = null;

function route() {
  if (stopPage) stopPage();
  const main = document.getElementById("main");
  const hash = location.hash || "#/";
  const job = hash.match(/^#\/jobs\/([0-9a-f]{32})/);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === hash);
  if (job) stopPage = jobPage(main, job[1]);
  else if (hash.startsWith("#/submit")) stopPage = submitPage(main);
  else stopPage = overviewPage(main);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
