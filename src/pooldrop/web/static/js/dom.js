// Small DOM and formatting helpers shared by every view.
//
// Safety rule of the console: server strings only ever reach the page as text nodes or attribute
// values (h() turns strings into text nodes); nothing here parses markup.

let idCounter = 0;

/** A page-unique id for label/input pairs. */
export function uid(prefix = "f") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/**
 * Create an element. `props`: `class`, `dataset`, `on<event>` handlers, DOM properties listed in
 * PROPS (value, checked...), anything else becomes an attribute. Children may be nodes, strings,
 * numbers, arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (PROPS.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

const PROPS = new Set(["value", "checked", "selected", "indeterminate"]);

/** Append children (see h) to a node. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---------------------------------------------------------------- formatting

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

const DATE_FMT = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
// Tables are dense: leave the year out when it is this year's.
const THIS_YEAR_FMT = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const TIME_FMT = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** A <time> element in local time, with the exact UTC value as its title. */
export function timeEl(iso, { short = false } = {}) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const fmt = short ? TIME_FMT : d.getFullYear() === new Date().getFullYear() ? THIS_YEAR_FMT : DATE_FMT;
  return h("time", { datetime: iso, title: iso }, fmt.format(d));
}

const DAY_FMT = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const HM_FMT = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function clock(d) {
  // Windows usually start on whole minutes: show seconds only when they matter.
  return d.getSeconds() ? TIME_FMT.format(d) : HM_FMT.format(d);
}

/** The start of a window, as a short local time of day; the exact value on hover. */
export function windowStartEl(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "—";
  return h("time", { class: "nowrap", datetime: iso, title: iso }, clock(d));
}

/** A window as "Mar 2, 12:00 → 12:15" in local time; exact UTC bounds on hover. */
export function windowEl(start, end) {
  const a = new Date(start);
  const b = new Date(end);
  if (Number.isNaN(a.getTime()) || Number.isNaN(b.getTime())) return `${start} → ${end}`;
  const sameDay = a.toDateString() === b.toDateString();
  return h(
    "time",
    { class: "nowrap", datetime: start, title: `${start} → ${end}` },
    `${DAY_FMT.format(a)}, ${clock(a)} → ${sameDay ? "" : `${DAY_FMT.format(b)}, `}${clock(b)}`,
  );
}

/**
 * The last characters of an id, full id on hover. (Ids are UUIDv7: their first characters are a
 * timestamp, shared by everything made in the same minute; the tail tells them apart.)
 */
export function shortId(id, length = 8) {
  if (!id) return "—";
  return h("code", { class: "id", title: id }, `…${String(id).slice(-length)}`);
}

/** A coloured label; `tone` picks the colour class (state names map to tones in CSS). */
export function badge(text, tone = String(text)) {
  return h("span", { class: `badge badge-${tone.replace(/[^a-z0-9_-]/gi, "_")}` }, text);
}

/** The value of a datetime-local input for a time in ms (local time, whole seconds). */
export function toLocalInput(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** 128 random bits as hex; works outside secure contexts, unlike crypto.randomUUID. */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The human sentence of an error (the problem `detail` for API errors). */
export function errorText(err) {
  if (!err) return "Something went wrong.";
  return err.detail || err.message || String(err);
}

// ---------------------------------------------------------------- building blocks

/** A labelled form control; returns the wrapper. `control` gets an id if it has none. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid();
  const hintEl = hint ? h("small", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

/** A <select> with `options` given as [value, label] pairs or plain values. */
export function select(name, options, selected) {
  return h(
    "select",
    { name },
    options.map((opt) => {
      const [value, label] = Array.isArray(opt) ? opt : [opt, opt];
      return h("option", { value, selected: value === selected }, label);
    }),
  );
}

/** An inline error area for a form; `show(err)` fills it, `show(null)` hides it. */
export function errorBox() {
  const el = h("p", { class: "form-error", role: "alert", hidden: true });
  return {
    el,
    show(err) {
      el.hidden = !err;
      el.textContent = err ? errorText(err) : "";
    },
  };
}

/**
 * A table. `columns`: [{label, cell(row) -> node|string, class?}]. Wrapped so that it scrolls
 * sideways on narrow screens instead of breaking the layout.
 */
export function table(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label))));
  const body = h("tbody");
  if (!rows.length) {
    body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty)));
  }
  for (const row of rows) {
    body.append(h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(row)))));
  }
  const tableEl = h("table", {}, caption ? h("caption", { class: "sr-only" }, caption) : null, head, body);
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" }, tableEl);
}

/** A button that disables itself while its async handler runs and reports failures. */
export function actionButton(label, handler, { kind = "secondary", title, ariaLabel } = {}) {
  const button = h("button", { type: "button", class: `btn btn-${kind}`, title, "aria-label": ariaLabel }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await handler();
    } catch (err) {
      notify(errorText(err), "error");
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** Copy text to the clipboard; falls back to a selected field where the Clipboard API is absent. */
export async function copyText(text, fallbackInput) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  fallbackInput.focus();
  fallbackInput.select();
  if (!document.execCommand("copy")) throw new Error("Copy failed: select the text and copy it.");
}

/**
 * A "shown once" secret: read-only field, copy button, dismiss button. `what` names it for
 * labels ("key secret", "enrollment token").
 */
export function secretCard(title, what, secret, note) {
  const input = h("input", { type: "text", readonly: true, value: secret, class: "mono", spellcheck: "false" });
  const status = h("span", { class: "copy-status", role: "status" });
  const card = h(
    "section",
    { class: "card secret-card", "aria-label": title },
    h("h3", {}, title),
    h("p", {}, note),
    field(what, input),
    h(
      "div",
      { class: "row" },
      h("button", {
        type: "button",
        class: "btn btn-primary",
        onclick: async () => {
          try {
            await copyText(secret, input);
            status.textContent = "Copied.";
          } catch (err) {
            status.textContent = errorText(err);
          }
        },
      }, "Copy"),
      h("button", { type: "button", class: "btn btn-secondary", onclick: () => card.remove() }, "I have stored it"),
      status,
    ),
  );
  queueMicrotask(() => input.select());
  return card;
}

// ---------------------------------------------------------------- notices

let noticeTimer = 0;

/** Show a short message in the page's status area (announced by screen readers). */
export function notify(message, kind = "info") {
  const area = document.getElementById("notice");
  if (!area) return;
  const closeBtn = h("button", { type: "button", class: "notice-close", "aria-label": "Dismiss message", onclick: () => area.replaceChildren() }, "×");
  fill(area, h("div", { class: `notice notice-${kind}` }, h("span", {}, message), closeBtn));
  clearTimeout(noticeTimer);
  // Errors stay until dismissed: they may need reading twice.
  if (kind !== "error") noticeTimer = setTimeout(() => area.replaceChildren(), 5000);
}

/** Run `fn` at most once per `ms`, at the end of a burst (trailing debounce). */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
