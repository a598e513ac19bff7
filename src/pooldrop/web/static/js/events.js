// The live events panel: an EventSource on the pool's SSE stream, newest event first.
//
// The server names each SSE message by the event type, so a listener per type is needed
// (onmessage only sees unnamed messages). EventSource reconnects by itself and sends
// Last-Event-ID, so nothing is missed across a dropped connection.

import { eventStreamUrl } from "./api.js";
import { badge, fmtBytes, h, timeEl } from "./dom.js";

const TYPES = [
  "upload.stored",
  "upload.failed",
  "group.ready",
  "group.claimed",
  "group.lease_expired",
  "group.failed",
  "result.published",
];

const MAX_ROWS = 200;

function summary(event, people) {
  const d = event.data ?? {};
  const who = (id) => people.name(id) ?? (id ? `${String(id).slice(0, 8)}…` : "someone");
  switch (event.type) {
    case "upload.stored":
      return [h("strong", {}, d.name ?? "file"), ` (${fmtBytes(d.size)}) from ${who(d.uploader_id)}`, d.late ? " — late" : ""];
    case "upload.failed":
      return [h("strong", {}, d.name ?? "file"), `: ${d.error ?? "failed"}`];
    case "result.published":
      return ["Result ", h("strong", {}, d.name ?? ""), ` (${fmtBytes(d.size)})`];
    default:
      if (d.window_start) {
        const parts = [`${d.file_count ?? 0} files, ${d.contributors ?? 0} contributors`];
        if (d.reason) parts.push(` — ${d.reason}`);
        return ["Group of ", timeEl(d.window_start), ": ", parts.join("")];
      }
      return JSON.stringify(d).slice(0, 200);
  }
}

const TONES = {
  "upload.stored": "ok",
  "upload.failed": "bad",
  "group.ready": "ready",
  "group.claimed": "claimed",
  "group.lease_expired": "warn",
  "group.failed": "bad",
  "result.published": "done",
};

/** The panel for one pool. `onEvent(event)` is called for every event; `close()` ends it. */
export function eventsPanel(pool, people, onEvent) {
  const status = h("span", { class: "live-state", dataset: { state: "connecting" } }, "connecting…");
  const list = h("ol", { class: "event-list", role: "log", "aria-label": "Pool events, newest first" });
  const empty = h("li", { class: "empty" }, "No events yet. Uploads, groups and results appear here as they happen.");
  list.append(empty);
  let paused = false;
  const held = [];
  const pauseBtn = h("button", { type: "button", class: "btn btn-secondary btn-small", "aria-pressed": "false" }, "Pause");
  const clearBtn = h("button", { type: "button", class: "btn btn-secondary btn-small" }, "Clear");

  function setState(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function show(event) {
    empty.remove();
    const item = h(
      "li",
      { class: "event" },
      h("div", { class: "event-head" }, badge(event.type, TONES[event.type] ?? "info"), h("span", { class: "muted small" }, "#", String(event.seq), " · ", timeEl(event.at, { short: true }))),
      h("div", { class: "event-body" }, summary(event, people)),
    );
    list.prepend(item);
    while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  }

  pauseBtn.addEventListener("click", () => {
    paused = !paused;
    pauseBtn.setAttribute("aria-pressed", String(paused));
    pauseBtn.textContent = paused ? "Resume" : "Pause";
    if (!paused) held.splice(0).forEach(show);
  });
  clearBtn.addEventListener("click", () => list.replaceChildren(empty));

  const source = new EventSource(eventStreamUrl(pool.pool_id));
  source.addEventListener("open", () => setState("live", "live"));
  for (const type of TYPES) {
    source.addEventListener(type, (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (paused) held.push(event);
      else show(event);
      onEvent(event);
    });
  }
  source.addEventListener("error", (message) => {
    // Either the server's own `error` event (a problem, then the stream ends) or a lost connection.
    if (message.data) {
      let detail = "the stream ended";
      try {
        detail = JSON.parse(message.data).detail ?? detail;
      } catch {
        // keep the default text
      }
      source.close();
      setState("closed", `stopped: ${detail}`);
      return;
    }
    if (source.readyState === EventSource.CLOSED) setState("closed", "disconnected");
    else setState("reconnecting", "reconnecting…");
  });

  const el = h(
    "section",
    { class: "card events-card" },
    h("div", { class: "events-head" }, h("h2", {}, "Live events"), status),
    h("div", { class: "row" }, pauseBtn, clearBtn),
    list,
  );

  return {
    el,
    close() {
      source.close();
    },
  };
}
