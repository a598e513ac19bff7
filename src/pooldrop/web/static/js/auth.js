// Log in or sign up: one form, two submit buttons.

import { ApiError, post } from "./api.js";
import { errorBox, field, h } from "./dom.js";

function describe(err, action) {
  if (!(err instanceof ApiError)) return err;
  // Keep the server's sentence, and say what to do where the status makes it clear.
  if (err.status === 429 && err.retryAfter) {
    return new Error(`${err.detail} (wait ${Math.ceil(err.retryAfter)} s).`);
  }
  if (err.status === 401 && action === "login") return new Error(err.detail || "Wrong username or password.");
  return err;
}

/** The login / signup page. */
export function loginView(ctx) {
  const username = h("input", { name: "username", autocomplete: "username", required: true, maxlength: "64", autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, maxlength: "1024" });
  const errors = errorBox();
  const loginBtn = h("button", { type: "submit", class: "btn btn-primary", value: "login" }, "Log in");
  const signupBtn = h("button", { type: "submit", class: "btn btn-secondary", value: "signup" }, "Create account");

  const form = h(
    "form",
    { class: "card auth-card", novalidate: false },
    h("h1", {}, "Sign in to pooldrop"),
    h("p", { class: "muted" }, "Run your pools: members, keys, uploads, groups and results."),
    field("Username", username),
    field("Password", password),
    errors.el,
    h("div", { class: "row" }, loginBtn, signupBtn),
    h("p", { class: "muted small" }, "New here? Choose a username and password, then “Create account”. The first account of a new instance becomes its administrator."),
  );

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const action = e.submitter?.value === "signup" ? "signup" : "login";
    errors.show(null);
    loginBtn.disabled = signupBtn.disabled = true;
    try {
      const body = { username: username.value.trim(), password: password.value };
      const answer = action === "signup"
        ? await post("/api/v1/auth/signup", body)
        : await post("/api/v1/auth/login", body);
      password.value = "";
      await ctx.signedIn(answer);
    } catch (err) {
      errors.show(describe(err, action));
      (action === "login" ? password : username).focus();
    } finally {
      loginBtn.disabled = signupBtn.disabled = false;
    }
  });

  return { el: h("div", { class: "auth-page" }, form) };
}
