// Files tab: the upload queue (picker, drag and drop, editable event times, progress per file)
// and the upload history with downloads.

import { ApiError, enc, get, saveAs, uploadContentPath, uploadFile } from "./api.js";
import {
  actionButton,
  badge,
  debounce,
  errorText,
  fill,
  fmtBytes,
  h,
  randomId,
  select,
  shortId,
  table,
  timeEl,
  toLocalInput,
  uid,
  windowStartEl,
} from "./dom.js";

const PARALLEL = 3;
const PAGE = 50;

/** A file waiting in (or done with) the queue. */
class QueueItem {
  constructor(file) {
    this.file = file;
    this.tsMs = file.lastModified || Date.now();
    // Sent as client_upload_id: the same file sent again (a retry) is stored once.
    this.clientUploadId = randomId();
    this.state = "queued"; // queued | uploading | stored | error
    // Set when the file can never be accepted (empty, too large): sending it again is pointless.
    this.hopeless = false;
    this.abort = null;
    this.el = null;
  }
}

function sendable(item) {
  return (item.state === "queued" || item.state === "error") && !item.hopeless;
}

function uploadCard(pool, onStored) {
  const items = [];
  let running = 0;

  const picker = h("input", { type: "file", multiple: true, class: "sr-only", tabindex: "-1", "aria-hidden": "true" });
  const chooseBtn = h("button", { type: "button", class: "btn btn-secondary" }, "Choose files…");
  const zone = h(
    "div",
    { class: "dropzone" },
    h("p", {}, h("strong", {}, "Drop files here"), " or ", chooseBtn),
    h("p", { class: "muted small" }, `Each file’s event time starts as its last-modified time; edit it before sending. Up to ${fmtBytes(pool.max_file_size)} per file.`),
    picker,
  );
  const list = h("ul", { class: "queue", "aria-label": "Files to upload" });
  const sendBtn = h("button", { type: "button", class: "btn btn-primary", disabled: true }, "Upload");
  const nowBtn = h("button", { type: "button", class: "btn btn-ghost", disabled: true }, "Set event times to now");
  const clearBtn = h("button", { type: "button", class: "btn btn-ghost", disabled: true }, "Clear finished");
  const summaryEl = h("span", { class: "muted small", role: "status" });

  function updateButtons() {
    const waiting = items.filter(sendable).length;
    sendBtn.disabled = waiting === 0;
    sendBtn.textContent = waiting > 1 ? `Upload ${waiting} files` : "Upload";
    nowBtn.disabled = waiting === 0;
    clearBtn.disabled = !items.some((i) => i.state === "stored");
    const done = items.filter((i) => i.state === "stored").length;
    summaryEl.textContent = items.length ? `${done} of ${items.length} stored` : "";
  }

  function renderItem(item) {
    const tsId = uid("ts");
    const tsInput = h("input", { id: tsId, type: "datetime-local", step: "1", value: toLocalInput(item.tsMs) });
    const progress = h("progress", { max: "100", value: "0", "aria-label": `Upload progress of ${item.file.name}` });
    const status = h("span", { class: "queue-status" }, "ready");
    const actions = h("span", { class: "queue-actions" });
    tsInput.addEventListener("change", () => {
      const ms = new Date(tsInput.value).getTime();
      if (Number.isNaN(ms)) return;
      item.tsMs = ms;
      // Another event time makes it another upload, not a retry of the first one.
      item.clientUploadId = randomId();
    });
    item.el = { root: null, tsInput, progress, status, actions };
    item.el.root = h(
      "li",
      { class: "queue-item" },
      h("div", { class: "queue-name" }, h("strong", {}, item.file.name), h("span", { class: "muted small" }, fmtBytes(item.file.size))),
      h("div", { class: "queue-ts" }, h("label", { for: tsId, class: "small" }, "Event time"), tsInput),
      h("div", { class: "queue-progress" }, progress, status),
      actions,
    );
    setState(item, "queued");
    return item.el.root;
  }

  function setState(item, state, text) {
    item.state = state;
    const { root, tsInput, progress, status, actions } = item.el;
    root.dataset.state = state;
    tsInput.disabled = state === "uploading" || state === "stored";
    if (state === "queued") status.textContent = text ?? "ready";
    if (state === "uploading") status.textContent = text ?? "sending…";
    if (state === "stored") {
      progress.value = 100;
      status.textContent = text ?? "stored";
    }
    if (state === "error") status.textContent = text ?? "failed";
    status.classList.toggle("error-text", state === "error");
    const buttons = [];
    if (state === "uploading") {
      buttons.push(h("button", { type: "button", class: "btn btn-ghost btn-small", onclick: () => item.abort?.(), "aria-label": `Cancel ${item.file.name}` }, "Cancel"));
    } else if (state !== "stored") {
      if (state === "error" && !item.hopeless) {
        buttons.push(h("button", { type: "button", class: "btn btn-secondary btn-small", onclick: () => send([item]), "aria-label": `Retry ${item.file.name}` }, "Retry"));
      }
      buttons.push(h("button", { type: "button", class: "btn btn-ghost btn-small", onclick: () => remove(item), "aria-label": `Remove ${item.file.name}` }, "Remove"));
    }
    fill(actions, buttons);
    updateButtons();
  }

  function remove(item) {
    items.splice(items.indexOf(item), 1);
    item.el.root.remove();
    updateButtons();
  }

  function add(files) {
    for (const file of files) {
      const item = new QueueItem(file);
      items.push(item);
      list.append(renderItem(item));
    }
    updateButtons();
  }

  function localProblem(file) {
    if (file.size === 0) return "The file is empty.";
    if (file.size > pool.max_file_size) return `Larger than this pool’s limit of ${fmtBytes(pool.max_file_size)}.`;
    return null;
  }

  async function upload(item) {
    const problem = localProblem(item.file);
    if (problem) {
      item.hopeless = true;
      setState(item, "error", problem);
      return;
    }
    item.el.progress.value = 0;
    setState(item, "uploading");
    const { promise, abort } = uploadFile(pool.pool_id, item.file, {
      ts: new Date(item.tsMs).toISOString(),
      name: item.file.name,
      clientUploadId: item.clientUploadId,
      onProgress(loaded, total) {
        const pct = total ? Math.floor((loaded / total) * 100) : 0;
        item.el.progress.value = pct;
        item.el.status.textContent = `${pct}%`;
      },
    });
    item.abort = abort;
    try {
      const { upload: stored, replay } = await promise;
      if (stored.status === "failed") {
        setState(item, "error", stored.error || "The server could not store the file.");
        return;
      }
      const parts = [replay ? "already stored" : "stored"];
      if (stored.late) parts.push("late: moved to the open window");
      setState(item, "stored", parts.join(" · "));
      onStored();
    } catch (err) {
      if (err.name === "AbortError") setState(item, "error", "cancelled");
      else setState(item, "error", err instanceof ApiError ? err.detail : errorText(err));
    } finally {
      item.abort = null;
    }
  }

  function send(chosen) {
    const pending = chosen.filter(sendable);
    for (const item of pending) setState(item, "queued", "waiting…");
    const next = () => {
      while (running < PARALLEL && pending.length) {
        const item = pending.shift();
        running += 1;
        upload(item).finally(() => {
          running -= 1;
          next();
        });
      }
    };
    next();
  }

  chooseBtn.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    add([...picker.files]);
    picker.value = "";
  });
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) add(files);
  });
  sendBtn.addEventListener("click", () => send(items));
  nowBtn.addEventListener("click", () => {
    const now = Date.now();
    for (const item of items) {
      if (item.state !== "queued" && item.state !== "error") continue;
      item.tsMs = now;
      item.clientUploadId = randomId();
      item.el.tsInput.value = toLocalInput(now);
    }
  });
  clearBtn.addEventListener("click", () => {
    for (const item of items.filter((i) => i.state === "stored")) remove(item);
  });

  return {
    el: h(
      "section",
      { class: "card", "aria-labelledby": "upload-title" },
      h("h2", { id: "upload-title" }, "Upload files"),
      zone,
      list,
      h("div", { class: "row" }, sendBtn, nowBtn, clearBtn, summaryEl),
    ),
    destroy() {
      for (const item of items) item.abort?.();
    },
  };
}

function historyCard(ctx, pool, people) {
  const isAdmin = pool.role === "admin";
  const mine = h("input", { type: "checkbox", id: uid("mine"), checked: !isAdmin });
  const status = select("status", [["", "Any status"], ["stored", "Stored"], ["failed", "Failed"]], "");
  status.id = uid("status");
  const area = h("div", {}, h("p", { class: "loading" }, "Loading history…"));
  const more = h("div", { class: "row" });
  let rows = [];
  let cursor = null;

  const columns = [
    { label: "Name", cell: (u) => h("span", { class: "filename" }, u.name) },
    {
      label: "Event time",
      cell: (u) => {
        const el = timeEl(u.ts);
        if (el instanceof Element) el.title = `event time ${u.ts}, received ${u.received_at}`;
        return el;
      },
    },
    { label: "Size", cell: (u) => fmtBytes(u.size), class: "num" },
    {
      label: "Status",
      cell: (u) => [badge(u.status), u.late ? [" ", badge("late", "warn")] : null, u.error ? h("div", { class: "small error-text" }, u.error) : null],
    },
    { label: "Window", cell: (u) => windowStartEl(u.window_start) },
    // Members other than admins only ever see their own uploads.
    isAdmin ? { label: "Uploader", cell: (u) => people.name(u.uploader_id) ?? shortId(u.uploader_id) } : null,
    {
      label: "File",
      cell: (u) => (u.status === "stored"
        ? actionButton("Download", () => saveAs(uploadContentPath(pool.pool_id, u.upload_id), u.name), { kind: "link", ariaLabel: `Download ${u.name}` })
        : "—"),
    },
  ].filter(Boolean);

  async function load(reset) {
    const page = await get(`/api/v1/pools/${enc(pool.pool_id)}/uploads`, {
      query: { mine: mine.checked ? "true" : undefined, status: status.value, limit: PAGE, cursor: reset ? undefined : cursor },
    });
    rows = reset ? page.items : rows.concat(page.items);
    cursor = page.next_cursor;
    fill(area, table(columns, rows, { caption: "Upload history", empty: "No uploads yet." }));
    fill(more, cursor ? actionButton("Load more", () => load(false)) : null);
  }

  const reload = () => load(true).catch((err) => fill(area, h("p", { class: "form-error", role: "alert" }, errorText(err))));
  mine.addEventListener("change", reload);
  status.addEventListener("change", reload);
  reload();

  const filters = h(
    "div",
    { class: "filters" },
    isAdmin ? h("label", { class: "check" }, mine, " Only my uploads") : null,
    h("label", { for: status.id, class: "sr-only" }, "Status"),
    status,
    actionButton("Refresh", () => load(true), { kind: "ghost" }),
  );
  return {
    el: h(
      "section",
      { class: "card", "aria-labelledby": "history-title" },
      h("div", { class: "card-head" }, h("h2", { id: "history-title" }, isAdmin ? "Uploads" : "Your uploads"), filters),
      area,
      more,
    ),
    refresh: debounce(() => {
      // Keep extra pages the user loaded: only an unpaged view reloads itself.
      if (!cursor || rows.length <= PAGE) reload();
    }, 400),
  };
}

/** The Files tab. */
export function uploadsSection(ctx, pool, people) {
  const canUpload = pool.role === "admin" || pool.role === "contributor";
  const history = historyCard(ctx, pool, people);
  const uploader = canUpload ? uploadCard(pool, history.refresh) : null;
  const note = canUpload ? null : h("p", { class: "note" }, `As a ${pool.role} of this pool you can read its files and results but not upload.`);
  return {
    el: h("div", { class: "stack" }, note, uploader?.el, history.el),
    refresh: history.refresh,
    destroy: () => uploader?.destroy(),
  };
}
