// Global admins: every user's files across pools, and the users of the instance.

import { enc, get, saveAs, uploadContentPath } from "./api.js";
import { actionButton, badge, errorText, fill, fmtBytes, h, select, shortId, table, timeEl, uid } from "./dom.js";

const PAGE = 100;

function errorPara(err) {
  return h("p", { class: "form-error", role: "alert" }, errorText(err));
}

/** The "All files" page. */
export function adminView(ctx) {
  const filesArea = h("div", {}, h("p", { class: "loading" }, "Loading files…"));
  const filesMore = h("div", { class: "row" });
  const usersArea = h("div", {}, h("p", { class: "loading" }, "Loading users…"));
  const uploader = select("uploader_id", [["", "Every uploader"]], "");
  uploader.id = uid("uploader");
  const userNames = new Map();
  const poolNames = new Map();
  let rows = [];
  let cursor = null;

  const fileColumns = [
    { label: "Name", cell: (u) => h("span", { class: "filename" }, u.name) },
    {
      label: "Pool",
      cell: (u) => h("a", { href: `#/pools/${enc(u.pool_id)}/files` }, poolNames.get(u.pool_id) ?? u.pool_id.slice(0, 8)),
    },
    { label: "Uploader", cell: (u) => userNames.get(u.uploader_id) ?? shortId(u.uploader_id) },
    { label: "Event time", cell: (u) => timeEl(u.ts) },
    { label: "Received", cell: (u) => timeEl(u.received_at) },
    { label: "Size", cell: (u) => fmtBytes(u.size), class: "num" },
    { label: "Status", cell: (u) => [badge(u.status), u.late ? [" ", badge("late", "warn")] : null] },
    {
      label: "File",
      cell: (u) => (u.status === "stored"
        ? actionButton("Download", () => saveAs(uploadContentPath(u.pool_id, u.upload_id), u.name), { kind: "link", ariaLabel: `Download ${u.name}` })
        : "—"),
    },
  ];

  const userColumns = [
    { label: "Username", cell: (u) => h("strong", {}, u.username) },
    { label: "User id", cell: (u) => shortId(u.user_id, 12) },
    { label: "Role", cell: (u) => badge(u.role) },
    { label: "Since", cell: (u) => timeEl(u.created_at) },
  ];

  async function loadFiles(reset) {
    const page = await get("/api/v1/admin/uploads", {
      query: { uploader_id: uploader.value, limit: PAGE, cursor: reset ? undefined : cursor },
    });
    rows = reset ? page.items : rows.concat(page.items);
    cursor = page.next_cursor;
    fill(filesArea, table(fileColumns, rows, { caption: "All files", empty: "No files uploaded yet." }));
    fill(filesMore, cursor ? actionButton("Load more", () => loadFiles(false)) : null);
  }

  (async () => {
    // Names first, so the files table shows people and pools rather than ids.
    const [users, pools] = await Promise.all([
      get("/api/v1/admin/users").catch((err) => {
        fill(usersArea, errorPara(err));
        return { items: [] };
      }),
      get("/api/v1/pools").catch(() => ({ items: [] })),
    ]);
    for (const u of users.items) {
      userNames.set(u.user_id, u.username);
      uploader.append(h("option", { value: u.user_id }, u.username));
    }
    for (const p of pools.items) poolNames.set(p.pool_id, p.name);
    if (users.items.length) fill(usersArea, table(userColumns, users.items, { caption: "Users" }));
    await loadFiles(true).catch((err) => fill(filesArea, errorPara(err)));
  })();

  uploader.addEventListener("change", () => loadFiles(true).catch((err) => fill(filesArea, errorPara(err))));

  const el = h(
    "div",
    { class: "page" },
    h("div", { class: "page-head" }, h("h1", {}, "All files"), h("p", { class: "muted" }, "Every upload of every pool, newest first (global administrators only).")),
    h(
      "section",
      { class: "card", "aria-labelledby": "all-files-title" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "all-files-title" }, "Files"),
        h("div", { class: "filters" }, h("label", { for: uploader.id, class: "sr-only" }, "Uploader"), uploader, actionButton("Refresh", () => loadFiles(true), { kind: "ghost" })),
      ),
      filesArea,
      filesMore,
    ),
    h("section", { class: "card", "aria-labelledby": "users-title" }, h("h2", { id: "users-title" }, "Users"), usersArea),
  );
  return { el };
}
