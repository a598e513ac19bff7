// Members tab (pool admins): add people by user id, change their role, remove them.

import { del, enc, get, put } from "./api.js";
import { actionButton, errorBox, errorText, field, fill, h, notify, select, shortId, table, timeEl, uid } from "./dom.js";

export const POOL_ROLES = [
  ["contributor", "contributor — uploads files"],
  ["listener", "listener — receives results"],
  ["aggregator", "aggregator — processes groups"],
  ["admin", "admin — runs the pool"],
];

/** The Members tab. `people` learns the names it lists. */
export function membersSection(ctx, pool, people) {
  const base = `/api/v1/pools/${enc(pool.pool_id)}/members`;
  const area = h("div", {}, h("p", { class: "loading" }, "Loading members…"));

  async function setRole(member, role, control) {
    control.disabled = true;
    try {
      await put(`/api/v1/pools/${enc(pool.pool_id)}/members/${enc(member.user_id)}`, { role });
      notify(`${member.username} is now ${role}.`);
    } catch (err) {
      control.value = member.role;
      notify(errorText(err), "error");
      return;
    } finally {
      control.disabled = false;
    }
    await load();
  }

  async function remove(member) {
    if (!window.confirm(`Remove ${member.username} from ${pool.name}?`)) return;
    await del(`/api/v1/pools/${enc(pool.pool_id)}/members/${enc(member.user_id)}`);
    notify(`${member.username} was removed.`);
    await load();
  }

  const columns = [
    { label: "Username", cell: (m) => h("strong", {}, m.username) },
    { label: "User id", cell: (m) => shortId(m.user_id, 12) },
    {
      label: "Role",
      cell: (m) => {
        const control = select("role", POOL_ROLES.map(([value]) => value), m.role);
        control.setAttribute("aria-label", `Role of ${m.username}`);
        control.addEventListener("change", () => setRole(m, control.value, control));
        return control;
      },
    },
    { label: "Member since", cell: (m) => timeEl(m.created_at) },
    { label: "", cell: (m) => actionButton("Remove", () => remove(m), { kind: "danger", ariaLabel: `Remove ${m.username}` }) },
  ];

  async function load() {
    try {
      const { items } = await get(base);
      for (const m of items) if (!people.name(m.user_id)) people.set(m.user_id, m.username);
      fill(area, table(columns, items, { caption: "Members" }));
    } catch (err) {
      fill(area, h("p", { class: "form-error", role: "alert" }, errorText(err)));
    }
  }

  // ---- add form
  const userId = h("input", { name: "user_id", required: true, autocomplete: "off", spellcheck: "false", class: "mono" });
  const role = select("role", POOL_ROLES, "contributor");
  const errors = errorBox();
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "add-member-title" },
    h("h2", { id: "add-member-title" }, "Add a member"),
    h("div", { class: "grid-2" }, field("User id", userId, "The id of a user of this instance (they find it on their account)."), field("Role", role)),
    errors.el,
    h("div", { class: "row" }, h("button", { type: "submit", class: "btn btn-primary" }, "Add member")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    errors.show(null);
    try {
      const member = await put(`/api/v1/pools/${enc(pool.pool_id)}/members/${enc(userId.value.trim())}`, { role: role.value });
      notify(`${member.username} is a ${member.role} of this pool.`);
      userId.value = "";
      await load();
    } catch (err) {
      errors.show(err);
    }
  });

  if (ctx.me.role === "admin") {
    // Global admins may list every user: offer them by name.
    const list = h("datalist", { id: uid("users") });
    userId.setAttribute("list", list.id);
    form.append(list);
    get("/api/v1/admin/users").then(
      ({ items }) => fill(list, items.map((u) => h("option", { value: u.user_id }, u.username))),
      () => {},
    );
  }

  load();
  return {
    el: h("div", { class: "stack" }, h("section", { class: "card", "aria-labelledby": "members-title" }, h("h2", { id: "members-title" }, "Members"), area), form),
  };
}
