// Keys & enrollment tab (pool admins): API keys for client apps and aggregators, and enrollment
// tokens that let many apps create their own keys. Secrets are shown once, with a copy button.

import { del, enc, get, post } from "./api.js";
import { actionButton, badge, errorBox, errorText, field, fill, h, notify, secretCard, select, shortId, table, timeEl } from "./dom.js";
import { POOL_ROLES } from "./members.js";

function keyForm(pool, onCreated) {
  const name = h("input", { name: "name", required: true, maxlength: "200", autocomplete: "off", placeholder: "sensor-17" });
  const role = select("role", POOL_ROLES, "contributor");
  const errors = errorBox();
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title" }, "New key"),
    h("div", { class: "grid-2" }, field("Name", name, "Which app or server holds it."), field("Role", role)),
    errors.el,
    h("div", { class: "row" }, h("button", { type: "submit", class: "btn btn-primary" }, "Create key")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    errors.show(null);
    try {
      const key = await post(`/api/v1/pools/${enc(pool.pool_id)}/keys`, { name: name.value.trim(), role: role.value });
      name.value = "";
      onCreated(key);
    } catch (err) {
      errors.show(err);
    }
  });
  return form;
}

function enrollmentForm(pool, onCreated) {
  const role = select("role", POOL_ROLES.map(([value]) => value), "contributor");
  const maxUses = h("input", { name: "max_uses", type: "number", min: "1", step: "1", value: "100", required: true, inputmode: "numeric" });
  const expiresIn = h("input", { name: "expires_in", value: "7d", required: true, autocomplete: "off", spellcheck: "false" });
  const errors = errorBox();
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-enrollment-title" },
    h("h2", { id: "new-enrollment-title" }, "New enrollment token"),
    h("p", { class: "muted small" }, "Apps holding this token enrol themselves: each receives its own key with the role below."),
    h(
      "div",
      { class: "grid-3" },
      field("Role", role),
      field("Max uses", maxUses),
      field("Expires in", expiresIn, "e.g. 1h, 7d, PT12H"),
    ),
    errors.el,
    h("div", { class: "row" }, h("button", { type: "submit", class: "btn btn-primary" }, "Create token")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    errors.show(null);
    try {
      const enrollment = await post(`/api/v1/pools/${enc(pool.pool_id)}/enrollments`, {
        role: role.value,
        max_uses: Number(maxUses.value),
        expires_in: expiresIn.value.trim(),
      });
      onCreated(enrollment);
    } catch (err) {
      errors.show(err);
    }
  });
  return form;
}

/** The Keys & enrollment tab. */
export function keysSection(ctx, pool, people) {
  const area = h("div", {}, h("p", { class: "loading" }, "Loading keys…"));
  const secrets = h("div", { class: "stack" });

  async function revoke(key) {
    if (!window.confirm(`Revoke the key “${key.name}”? Apps using it stop working at once.`)) return;
    await del(`/api/v1/pools/${enc(pool.pool_id)}/keys/${enc(key.key_id)}`);
    notify(`The key “${key.name}” is revoked.`);
    await load();
  }

  const columns = [
    { label: "Name", cell: (k) => h("strong", {}, k.name) },
    { label: "Role", cell: (k) => badge(k.role) },
    { label: "Key id", cell: (k) => shortId(k.key_id, 12) },
    { label: "Created", cell: (k) => timeEl(k.created_at) },
    { label: "State", cell: (k) => (k.revoked_at ? [badge("revoked", "bad"), " ", timeEl(k.revoked_at)] : badge("active", "ok")) },
    { label: "Source", cell: (k) => (k.enrollment_id ? ["enrolled ", shortId(k.enrollment_id)] : "created here"), class: "nowrap" },
    {
      label: "",
      cell: (k) => (k.revoked_at ? "" : actionButton("Revoke", () => revoke(k), { kind: "danger", ariaLabel: `Revoke the key ${k.name}` })),
    },
  ];

  async function load() {
    try {
      const { items } = await get(`/api/v1/pools/${enc(pool.pool_id)}/keys`);
      for (const k of items) people.set(k.key_id, `key “${k.name}”`);
      fill(area, table(columns, items, { caption: "Keys", empty: "No keys yet." }));
    } catch (err) {
      fill(area, h("p", { class: "form-error", role: "alert" }, errorText(err)));
    }
  }

  function showSecret(card) {
    secrets.prepend(card);
    card.querySelector("input")?.focus();
  }

  const onKey = (key) => {
    showSecret(secretCard(`Key “${key.name}” created`, "Key secret", key.secret, "Copy the secret now: it is shown only this once. Apps send it as “Authorization: Bearer …”."));
    load();
  };
  const onEnrollment = (e) => {
    showSecret(
      secretCard(
        "Enrollment token created",
        "Enrollment token",
        e.token,
        `Shown only this once. Up to ${e.max_uses} apps may enrol as ${e.role} until ${new Date(e.expires_at).toLocaleString()}: ` +
          "each sends POST /api/v1/enroll with {token, name} and receives its own key.",
      ),
    );
  };

  load();
  return {
    el: h(
      "div",
      { class: "stack" },
      secrets,
      h("section", { class: "card", "aria-labelledby": "keys-title" }, h("h2", { id: "keys-title" }, "Keys"), area),
      h("div", { class: "grid-2 align-start" }, keyForm(pool, onKey), enrollmentForm(pool, onEnrollment)),
    ),
  };
}
