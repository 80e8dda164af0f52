// The console's shell: sign-in with a bearer token (kept in sessionStorage), the signed-in
// user's roles (access.whoami), the nav bar and a small router over /console/... paths.

import * as api from "./api.js";
import { h, fill, errorBox } from "./ui.js";
import * as policies from "./page-policies.js";
import * as runs from "./page-runs.js";
import * as quarantine from "./page-quarantine.js";
import * as flags from "./page-flags.js";
import * as audit from "./page-audit.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

// [pattern, section, render(ctx, ...params)]
const ROUTES = [
  [/^\/console\/?$/, "policies", policies.list],
  [/^\/console\/policies\/?$/, "policies", policies.list],
  [/^\/console\/policies\/([^/]+)$/, "policies", policies.show],
  [/^\/console\/runs\/?$/, "runs", runs.list],
  [/^\/console\/runs\/([^/]+)$/, "runs", runs.show],
  [/^\/console\/quarantine\/?$/, "quarantine", quarantine.list],
  [/^\/console\/quarantine\/([^/]+)\/([^/]+)$/, "quarantine", quarantine.show],
  [/^\/console\/flags\/?$/, "flags", flags.list],
  [/^\/console\/flags\/([^/]+)$/, "flags", flags.show],
  [/^\/console\/audit\/?$/, "audit", audit.list],
];

let me = null;
let cleanup = null;

/** What a page may ask of the shell. */
const ctx = {
  get user() { return me && me.user; },
  can(role) { return !!me && (me.internal || me.roles.some((g) => g.role === role)); },
  navigate(path) { history.pushState(null, "", path); route(); },
  /** A function to run when the page is left (stop following a run). */
  onLeave(fn) { cleanup = fn; },
  refresh() { route(); },
};

function signInPage(error) {
  nav.hidden = true;
  fill(who);
  const input = h("input", { type: "password", name: "token", required: true, autocomplete: "off", placeholder: "gh_…", id: "token" });
  const form = h("form", { class: "card signin", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste a bearer token. An admin issues one with ",
      h("code", {}, "gatehouse access issue-token <user>"), ". It is kept in this tab only."),
    h("label", {}, "Token", input),
    error ? errorBox(error) : null,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    api.token.set(input.value.trim());
    await start();
  });
  fill(view, form);
  input.focus();
}

async function start() {
  if (!api.token.get()) return signInPage();
  try {
    me = await api.whoami();
  } catch (e) {
    api.token.clear();
    return signInPage(e);
  }
  nav.hidden = false;
  const roles = me.roles.map((g) => g.role).join(", ") || "no role";
  fill(who,
    h("span", { id: "user" }, me.user || "gatehouse"),
    h("span", { class: "roles", id: "roles" }, roles),
    h("button", { id: "signout", onclick: signOut }, "Sign out"));
  route();
}

function signOut() {
  api.token.clear();
  me = null;
  if (cleanup) cleanup();
  cleanup = null;
  history.pushState(null, "", "/console");
  signInPage();
}

async function route() {
  if (!me) return;
  if (cleanup) cleanup();
  cleanup = null;
  const path = location.pathname;
  for (const [pattern, section, render] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    for (const a of nav.querySelectorAll("a")) a.classList.toggle("current", a.dataset.section === section);
    fill(view, h("p", { class: "muted" }, "Loading…"));
    try {
      await render(ctx, view, ...m.slice(1).map(decodeURIComponent));
    } catch (e) {
      fill(view, h("h1", {}, "Cannot show this page"), errorBox(e));
    }
    return;
  }
  fill(view, h("h1", {}, "Not found"), h("p", {}, "No console page at ", h("code", {}, path), "."));
}

// Internal links navigate without reloading the page.
document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith("/console")) return;
  e.preventDefault();
  ctx.navigate(href);
});
window.addEventListener("popstate", route);

start();
