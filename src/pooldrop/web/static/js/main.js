// Entry point: the session, the hash router and the top bar.
//
// Routes: #/login, #/pools, #/pools/<id>[/<tab>], #/admin. A session only ever starts from the
// login form: a token taken from a link would let a crafted URL sign someone into another account.

import { clearToken, get, getToken, post, setToken, UNAUTHENTICATED } from "./api.js";
import { adminView } from "./admin.js";
import { loginView } from "./auth.js";
import { badge, fill, h, notify } from "./dom.js";
import { poolView } from "./pool.js";
import { poolsView } from "./pools.js";

const ctx = {
  /** The signed-in principal: {id, username, role, kind}, or null. */
  me: null,
  go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  async signedIn(answer) {
    setToken(answer.access_token);
    ctx.me = { id: answer.user_id, username: answer.username, role: answer.role, kind: "user" };
    renderSession();
    ctx.go(pendingRoute && pendingRoute !== "#/login" ? pendingRoute : "#/pools");
    pendingRoute = null;
  },
};

let current = null; // {key, view}
let pendingRoute = null; // where to go after logging in

async function loadMe() {
  if (!getToken()) return;
  try {
    const v = await get("/api/v1/auth/validate");
    ctx.me = { id: v.principal_id, username: v.username || `key ${v.principal_id.slice(0, 8)}`, role: v.role, kind: v.kind };
  } catch {
    clearToken();
    ctx.me = null;
  }
}

async function logout() {
  try {
    await post("/api/v1/auth/logout");
  } catch {
    // The token is dropped below either way.
  }
  clearToken();
  ctx.me = null;
  renderSession();
  notify("You are logged out.");
  ctx.go("#/login");
}

function renderSession() {
  const area = document.getElementById("session");
  const nav = document.getElementById("topnav");
  nav.hidden = !ctx.me;
  nav.querySelector('[data-nav="admin"]').hidden = ctx.me?.role !== "admin";
  if (!ctx.me) {
    fill(area);
    return;
  }
  fill(
    area,
    h("span", { class: "who" }, h("span", { class: "sr-only" }, "Signed in as "), ctx.me.username),
    ctx.me.role === "admin" ? badge("global admin", "admin") : null,
    h("button", { type: "button", class: "btn btn-ghost", onclick: logout }, "Log out"),
  );
}

function parseRoute() {
  const fragment = location.hash.slice(1) || "/pools";
  const path = fragment.split("?", 1)[0];
  return path.split("/").filter(Boolean).map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  });
}

function show(key, makeView, title) {
  if (current?.key === key) return current.view;
  current?.view.destroy?.();
  const view = makeView();
  current = { key, view };
  const main = document.getElementById("main");
  fill(main, view.el);
  document.title = `${title} · pooldrop`;
  // Move focus to the new page so keyboard and screen-reader users start at its top.
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
  window.scrollTo(0, 0);
  return view;
}

function markNav(section) {
  for (const link of document.querySelectorAll("#topnav a")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  // In-page anchors (the skip link) are not routes.
  if (location.hash && !location.hash.startsWith("#/")) return;
  const [section = "pools", id, tab] = parseRoute();
  if (!ctx.me && section !== "login") {
    pendingRoute = location.hash || "#/pools";
    ctx.go("#/login");
    return;
  }
  markNav(section);
  if (section === "login") {
    if (ctx.me) return ctx.go("#/pools");
    show("login", () => loginView(ctx), "Log in");
  } else if (section === "pools" && id) {
    show(`pool:${id}`, () => poolView(ctx, id), "Pool").showTab(tab);
  } else if (section === "pools") {
    show("pools", () => poolsView(ctx), "Pools");
  } else if (section === "admin") {
    show("admin", () => adminView(ctx), "All files");
  } else {
    show(`missing:${section}`, () => ({
      el: h("section", {}, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/pools" }, "Back to your pools"))),
    }), "Not found");
  }
}

async function boot() {
  document.getElementById("skip-link").addEventListener("click", (e) => {
    e.preventDefault();
    document.getElementById("main").focus();
  });
  window.addEventListener(UNAUTHENTICATED, () => {
    if (!ctx.me) return;
    pendingRoute = location.hash;
    clearToken();
    ctx.me = null;
    renderSession();
    notify("Your session has ended. Please log in again.", "error");
    ctx.go("#/login");
  });
  await loadMe();
  renderSession();
  window.addEventListener("hashchange", route);
  route();
}

boot();
