// One pool: its settings, section tabs (files, groups, members, keys) and the live events panel.
// Sections are built once and kept, so an upload queue survives switching tabs.

import { enc, get } from "./api.js";
import { badge, errorText, fill, fmtBytes, h } from "./dom.js";
import { eventsPanel } from "./events.js";
import { groupsSection } from "./groups.js";
import { keysSection } from "./keys.js";
import { membersSection } from "./members.js";
import { quorumText } from "./pools.js";
import { uploadsSection } from "./uploads.js";

const TABS = [
  { id: "files", label: "Files", make: uploadsSection },
  { id: "groups", label: "Groups & results", make: groupsSection },
  { id: "members", label: "Members", make: membersSection, admin: true },
  { id: "keys", label: "Keys & enrollment", make: keysSection, admin: true },
];

/**
 * Names for principal ids (uploaders are users or keys). Pool admins can list members and keys;
 * everyone else sees their own name and short ids.
 */
async function loadPeople(ctx, pool) {
  const names = new Map([[ctx.me.id, `${ctx.me.username} (you)`]]);
  if (pool.role === "admin") {
    const [members, keys] = await Promise.all([
      get(`/api/v1/pools/${enc(pool.pool_id)}/members`).catch(() => ({ items: [] })),
      get(`/api/v1/pools/${enc(pool.pool_id)}/keys`).catch(() => ({ items: [] })),
    ]);
    for (const m of members.items) if (!names.has(m.user_id)) names.set(m.user_id, m.username);
    for (const k of keys.items) names.set(k.key_id, `key “${k.name}”`);
  }
  return {
    name: (id) => names.get(id) ?? null,
    set: (id, name) => names.set(id, name),
  };
}

function settingsList(pool) {
  const item = (term, value) => h("div", {}, h("dt", {}, term), h("dd", {}, value));
  return h(
    "dl",
    { class: "settings" },
    item("Window", pool.window),
    item("Lateness", pool.allowed_lateness),
    item("Late files", pool.late_policy === "next_open" ? "next open window" : "rejected"),
    item("Quorum", quorumText(pool)),
    item("Max file", fmtBytes(pool.max_file_size)),
    item("Lease", `${pool.lease} × ${pool.max_attempts}`),
  );
}

/** The pool page; `showTab(id)` switches sections without reloading. */
export function poolView(ctx, poolId) {
  const heading = h("h1", {}, "Pool");
  const head = h("div", { class: "page-head" }, heading, h("p", { class: "loading" }, "Loading pool…"));
  const tabNav = h("nav", { class: "tabs", "aria-label": "Pool sections" });
  const body = h("div", { class: "pool-body" });
  const side = h("aside", { class: "pool-side", "aria-label": "Live events" });
  const el = h("div", { class: "page pool-page" }, head, tabNav, h("div", { class: "layout-pool" }, body, side));

  const sections = new Map(); // tab id -> {el, refresh?}
  let pool = null;
  let people = null;
  let panel = null;
  let wantedTab = "files";
  let destroyed = false;

  function visibleTabs() {
    return TABS.filter((t) => !t.admin || pool.role === "admin");
  }

  function render(tabId) {
    if (!pool) return;
    const tabs = visibleTabs();
    const tab = tabs.find((t) => t.id === tabId) ?? tabs[0];
    if (tab.id !== tabId) {
      // A tab this role does not have: show the address of the one shown instead.
      history.replaceState(null, "", `#/pools/${enc(pool.pool_id)}/${tab.id}`);
    }
    fill(
      tabNav,
      tabs.map((t) =>
        h("a", { href: `#/pools/${enc(pool.pool_id)}/${t.id}`, "aria-current": t === tab ? "page" : false }, t.label),
      ),
    );
    if (!sections.has(tab.id)) sections.set(tab.id, tab.make(ctx, pool, people));
    fill(body, sections.get(tab.id).el);
  }

  function onEvent(event) {
    // Refresh what the event changes; sections debounce, so a burst costs one reload each.
    for (const [id, section] of sections) {
      if (!section.refresh) continue;
      if (id === "files" && event.type.startsWith("upload.")) section.refresh();
      if (id === "groups") section.refresh();
    }
  }

  (async () => {
    try {
      pool = await get(`/api/v1/pools/${enc(poolId)}`);
      people = await loadPeople(ctx, pool);
    } catch (err) {
      fill(head, h("h1", {}, "Pool"), h("p", { class: "form-error", role: "alert" }, errorText(err)), h("p", {}, h("a", { href: "#/pools" }, "Back to your pools")));
      return;
    }
    if (destroyed) return;
    document.title = `${pool.name} · pooldrop`;
    const hadFocus = document.activeElement === heading;
    fill(
      head,
      h("p", { class: "crumbs" }, h("a", { href: "#/pools" }, "Pools"), " / "),
      h("div", { class: "title-row" }, fill(heading, pool.name), badge(`your role: ${pool.role}`, pool.role)),
      settingsList(pool),
    );
    if (hadFocus) heading.focus({ preventScroll: true });
    render(wantedTab);
    panel = eventsPanel(pool, people, onEvent);
    fill(side, panel.el);
  })();

  return {
    el,
    showTab(tabId) {
      wantedTab = tabId || "files";
      render(wantedTab);
    },
    destroy() {
      destroyed = true;
      panel?.close();
      for (const section of sections.values()) section.destroy?.();
    },
  };
}
