// The pools the caller belongs to, and the form that creates one.

import { enc, get, post } from "./api.js";
import { badge, copyText, errorBox, errorText, field, fill, fmtBytes, h, select, table, timeEl } from "./dom.js";

const MIB = 1024 * 1024;

/** Pool settings as short text, for tables and the pool header. */
export function quorumText(pool) {
  return pool.min_contributors ? `${pool.min_contributors} contributors` : "—";
}

function createForm(ctx) {
  const name = h("input", { name: "name", required: true, maxlength: "200", autocomplete: "off" });
  const windowIn = h("input", { name: "window", required: true, value: "15m", autocomplete: "off", spellcheck: "false" });
  const lateness = h("input", { name: "allowed_lateness", value: "0s", autocomplete: "off", spellcheck: "false" });
  const policy = select("late_policy", [["reject", "Reject late files"], ["next_open", "Put them in the open window"]], "reject");
  const quorum = h("input", { name: "min_contributors", type: "number", min: "1", step: "1", inputmode: "numeric" });
  const maxSize = h("input", { name: "max_file_size", type: "number", min: "0.001", step: "any", value: "64", inputmode: "decimal" });
  const errors = errorBox();
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create pool");

  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-pool-title" },
    h("h2", { id: "new-pool-title" }, "New pool"),
    field("Name", name),
    h(
      "div",
      { class: "grid-2" },
      field("Window", windowIn, "Length of each group: 90s, 15m, 2h, 1d or PT15M (1 minute to 30 days)."),
      field("Allowed lateness", lateness, "How long after a window ends files may still join it."),
      field("Late files", policy),
      field("Quorum (optional)", quorum, "Close a group early once this many contributors sent files."),
      field("Max file size (MiB)", maxSize),
    ),
    errors.el,
    h("div", { class: "row" }, submit),
  );

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    errors.show(null);
    const body = {
      name: name.value.trim(),
      window: windowIn.value.trim(),
      allowed_lateness: lateness.value.trim() || undefined,
      late_policy: policy.value,
      min_contributors: quorum.value ? Number(quorum.value) : undefined,
      max_file_size: maxSize.value ? Math.round(Number(maxSize.value) * MIB) : undefined,
    };
    submit.disabled = true;
    try {
      const pool = await post("/api/v1/pools", body);
      ctx.go(`#/pools/${enc(pool.pool_id)}`);
    } catch (err) {
      errors.show(err);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The caller's user id, which pool admins need to add them to a pool. */
function whoAmI(ctx) {
  if (ctx.me?.kind !== "user") return null;
  const idInput = h("input", { type: "text", readonly: true, value: ctx.me.id, class: "mono inline-id", "aria-label": "Your user id", size: String(ctx.me.id.length) });
  const status = h("span", { class: "copy-status", role: "status" });
  const copy = h("button", { type: "button", class: "btn btn-ghost btn-small" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await copyText(ctx.me.id, idInput);
      status.textContent = "Copied.";
    } catch (err) {
      status.textContent = errorText(err);
    }
  });
  return h("p", { class: "small muted user-id" }, "Your user id (pool admins add you with it): ", idInput, copy, status);
}

/** The pools page. */
export function poolsView(ctx) {
  const listArea = h("div", {}, h("p", { class: "loading" }, "Loading pools…"));
  const el = h(
    "div",
    { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, "Pools"), h("p", { class: "muted" }, "Each pool groups its members’ files by event time into windows."), whoAmI(ctx)),
    h("div", { class: "layout-side" }, h("section", { class: "card", "aria-label": "Your pools" }, listArea), createForm(ctx)),
  );

  (async () => {
    try {
      const { items } = await get("/api/v1/pools");
      fill(
        listArea,
        table(
          [
            { label: "Name", cell: (p) => h("a", { href: `#/pools/${enc(p.pool_id)}`, class: "filename" }, p.name) },
            { label: "Your role", cell: (p) => badge(p.role) },
            { label: "Window", cell: (p) => p.window },
            { label: "Lateness", cell: (p) => p.allowed_lateness },
            { label: "Quorum", cell: quorumText },
            { label: "Max file", cell: (p) => fmtBytes(p.max_file_size), class: "num" },
            { label: "Created", cell: (p) => timeEl(p.created_at) },
          ],
          items,
          { caption: "Your pools", empty: "You are not in any pool yet. Create one with the form." },
        ),
      );
    } catch (err) {
      fill(listArea, h("p", { class: "form-error", role: "alert" }, errorText(err)));
    }
  })();

  return { el };
}
