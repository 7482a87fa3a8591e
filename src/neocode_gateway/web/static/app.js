// The NeoCode page: plain JS modules, no build step, every asset from the server.
import { Transcript } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const state = {
  device: "", scope: "read", ws: null, retry: 200, ref: 0, closed: false,
  sessions: new Map(), route: { view: "list" }, session: null,
  lastSeq: 0, anchor: 0, active: null, pending: [], notified: new Set(), gatewayUp: true,
};
const transcript = new Transcript($("transcript"));
window.neocode = { state, transcript }; // for tests and the curious

// -- the connection --------------------------------------------------------------------
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  state.ws = ws;
  ws.onopen = () => { state.retry = 200; setConn(state.gatewayUp ? "" : "reconnecting to the gateway…"); resume(); };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = (e) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (e.code === 4401) return ended(e.reason || "This device is not paired, or was revoked.");
    setConn("reconnecting…");
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 3000);
  };
}

function send(message) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { showError("not connected; reconnecting…"); return false; }
  state.ws.send(JSON.stringify(message));
  return true;
}

// What the page shows, asked again after any reconnect: nothing lost, nothing doubled.
function resume() {
  if (state.route.view === "session") {
    send({ op: "open", session: state.route.id, after_seq: state.lastSeq, from_seq: state.anchor });
  } else {
    send({ op: "list" });
  }
}

function setConn(text) { $("conn").textContent = text; }
function showError(text) { $("error").textContent = text; }

function ended(reason) {
  state.closed = true;
  $("ended-text").textContent = reason;
  $("ended").hidden = false;
  document.title = "Closed — NeoCode";
}

// -- what the server says --------------------------------------------------------------
function handle(m) {
  switch (m.t) {
    case "hello":
      state.device = m.device; state.scope = m.scope;
      $("who").textContent = `${m.device} · ${m.scope}`;
      showView();
      break;
    case "gateway":
      state.gatewayUp = m.up;
      setConn(m.up ? "" : "reconnecting to the gateway…");
      break;
    case "sessions": onSessions(m); break;
    case "pending": onPending(m.requests); break;
    case "opened": onOpened(m.session); break;
    case "reset": transcript.clear(); state.lastSeq = 0; state.anchor = 0; break;
    case "items":
      if (state.route.view !== "session" || m.session !== state.route.id) break;
      transcript.push(m.items);
      state.lastSeq = Math.max(state.lastSeq, m.last_seq);
      state.anchor = m.anchor || state.anchor;
      state.active = m.active;
      showRunState();
      break;
    case "ack": onAck(m); break;
    case "err": onError(m); break;
  }
}

function onSessions(m) {
  if (m.reset) state.sessions.clear();
  for (const s of m.sessions) state.sessions.set(s.id, s);
  if (state.route.view === "list") renderList(!m.more);
}

function renderList(done) {
  const rows = [...state.sessions.values()].sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  const list = $("sessions");
  const frag = document.createDocumentFragment();
  for (const s of rows) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "#/s/" + encodeURIComponent(s.id);
    const title = span("title", s.title || "untitled");
    const st = span("state" + (s.state === "running" ? " running" : ""), s.state === "running" ? "live" : s.state || "");
    const meta = span("muted", `${s.agent || ""} · ${ago(s.updated_at)}`);
    a.append(title, st, meta);
    li.append(a);
    frag.append(li);
  }
  list.replaceChildren(frag);
  $("list-status").textContent = rows.length ? (done === false ? `${rows.length} sessions, loading more…` : `${rows.length} sessions`) : "No sessions yet.";
}

function span(cls, text) { const s = document.createElement("span"); s.className = cls; s.textContent = text; return s; }

function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ts).toLocaleDateString();
}

function onPending(requests) {
  state.pending = requests;
  const list = $("pending-list");
  list.replaceChildren();
  for (const r of requests) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = "#/s/" + encodeURIComponent(r.session_id || "");
    link.textContent = r.title;
    li.append(link);
    if (r.html) { const box = document.createElement("div"); box.innerHTML = r.html; li.append(box); }
    list.append(li);
    if (!state.notified.has(r.request_id)) {
      state.notified.add(r.request_id);
      if (document.hidden && "Notification" in window && Notification.permission === "granted") {
        new Notification("NeoCode: permission waiting", { body: r.title, tag: r.request_id });
      }
    }
  }
  $("pending").hidden = requests.length === 0;
  setTitle();
}

function setTitle() {
  const n = state.pending.length;
  const base = state.route.view === "session" && state.session ? state.session.title : "NeoCode";
  document.title = (n ? `(${n}) Permission waiting — ` : "") + base;
}

function onOpened(session) {
  state.session = session;
  $("s-title").textContent = session.title || "untitled";
  $("s-info").textContent = `${session.agent || ""} · ${session.workdir || ""}`;
  showRunState(session.state === "running" ? session.active_run_id : null);
  setTitle();
}

function showRunState(active) {
  if (active !== undefined) state.active = active;
  const running = !!state.active;
  $("s-state").textContent = running ? "live" : "idle";
  $("s-state").className = "state" + (running ? " running" : "");
  $("cancel").hidden = !running || state.scope === "read";
}

function onAck(m) {
  if (m.op === "run") {
    $("prompt-text").value = "";
    showError("");
    const id = m.result.session_id;
    if (state.route.view !== "session" || state.route.id !== id) location.hash = "#/s/" + encodeURIComponent(id);
  } else if (m.op === "resolve" || m.op === "cancel") {
    showError("");
  }
}

function onError(m) {
  if (m.op === "open" && m.status === 404) {
    $("s-title").textContent = "No such session";
    $("s-info").textContent = "404: this session does not exist (it may have been deleted).";
    return;
  }
  if (m.op === "resolve") for (const b of document.querySelectorAll("button[data-perm]")) b.disabled = false;
  showError(m.message || "error " + m.status);
}

// -- navigation ------------------------------------------------------------------------
function parseRoute() {
  const hash = location.hash || "#/";
  if (hash.startsWith("#/s/")) return { view: "session", id: decodeURIComponent(hash.slice(4)) };
  if (hash === "#/new") return { view: "new" };
  return { view: "list" };
}

// The views shown for the route and the device's scope (no request).
function showView() {
  $("list-view").hidden = state.route.view !== "list";
  $("session-view").hidden = state.route.view !== "session";
  $("new-view").hidden = state.route.view !== "new";
  $("prompt").hidden = state.scope !== "full" || state.route.view === "list";
  $("new-link").hidden = state.scope !== "full";
  setTitle();
}

function route() {
  const previous = state.route;
  state.route = parseRoute();
  showView();
  showError("");
  if (state.route.view === "session") {
    if (previous.view !== "session" || previous.id !== state.route.id) {
      transcript.clear();
      state.lastSeq = 0; state.anchor = 0; state.active = null; state.session = null;
      $("s-title").textContent = ""; $("s-info").textContent = "";
      showRunState(null);
      send({ op: "open", session: state.route.id, after_seq: 0, from_seq: 0 });
    }
  } else {
    if (previous.view === "session") send({ op: "close" });
    if (state.route.view === "list") send({ op: "list" });
  }
  setTitle();
}

// -- what the user does ----------------------------------------------------------------
document.addEventListener("click", (e) => {
  const b = e.target.closest("button[data-perm]");
  if (!b) return;
  const id = b.dataset.perm;
  if (send({ op: "resolve", ref: ++state.ref, request_id: id, decision: b.dataset.decision, option_id: b.dataset.option || undefined })) {
    for (const other of document.querySelectorAll(`button[data-perm="${CSS.escape(id)}"]`)) other.disabled = true;
  }
});

$("cancel").addEventListener("click", () => send({ op: "cancel", ref: ++state.ref, session_id: state.route.id }));

$("prompt").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("prompt-text").value.trim();
  if (!text) return;
  const message = { op: "run", ref: ++state.ref, text };
  if (state.route.view === "session") message.session_id = state.route.id;
  else for (const k of ["agent", "mode", "workdir"]) { const v = $("new-" + k).value.trim(); if (v) message[k] = v; }
  send(message);
});

$("prompt-text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("prompt").requestSubmit();
});

if ("Notification" in window && Notification.permission === "default") {
  $("notify").hidden = false;
  $("notify").addEventListener("click", () => Notification.requestPermission().then(() => { $("notify").hidden = true; }));
}

window.addEventListener("hashchange", route);
state.route = parseRoute(); // asked for by resume() once connected
connect();
