// The console's page: a session first, then one view at a time, chosen by
// the URL's fragment:
//
//   #/                overview          #/plugins/ID   a plugin's page
//   #/plugins         every plugin      #/view/ID      a plugin's own view

import { ApiError, call, get } from "./api.js";
import { h, replace } from "./dom.js";
import { login } from "./login.js";
import { overview } from "./overview.js";
import { pluginPage } from "./plugin.js";
import { plugins as pluginsPage } from "./plugins.js";
import { drawSidebar, markSection } from "./sidebar.js";
import { view } from "./view.js";

const REFRESH_EVERY_MS = 3000;

const main = document.getElementById("main");
let leave = () => {};
let timer = null;
let list = [];
let loggingIn = null;

/** The current route: [section, id]. */
function where() {
  const [, section = "", id] = (window.location.hash || "#/").split("/");
  return [section, id ? decodeURIComponent(id) : null];
}

async function loadPlugins() {
  list = await get("/api/plugins");
  const [section, id] = where();
  drawSidebar(list, section === "view" ? id : null);
  return list;
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
  try {
    leave();
  } finally {
    leave = () => {};
  }
}

/** Shows the view the fragment names. */
async function show() {
  stop();
  const [section, id] = where();
  markSection(section === "" ? "#/" : `#/${section}`);
  try {
    await loadPlugins();
    if (section === "") {
      await overview(main);
    } else if (section === "plugins" && !id) {
      let shown = JSON.stringify(list);
      const again = async () => {
        await loadPlugins();
        const now = JSON.stringify(list);
        if (now !== shown) {
          shown = now;
          pluginsPage(main, list, again);
        }
      };
      pluginsPage(main, list, again);
      timer = setInterval(() => again().catch(() => {}), REFRESH_EVERY_MS);
    } else if (section === "plugins") {
      leave = await pluginPage(main, id, show);
    } else if (section === "view" && id) {
      leave = await view(main, id);
    } else {
      replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "To the overview")));
    }
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return; // the login form takes over
    replace(main,
      h("h1", {}, "Something went wrong"),
      h("div", { class: "problem", role: "alert" }, h("p", {}, e.message)),
      h("p", {}, h("a", { href: "#/" }, "To the overview")));
  }
  if (document.activeElement === document.body) main.focus();
}

/** Asks for the token until a session is open, then shows the page again. */
async function needLogin() {
  if (loggingIn) return loggingIn;
  stop();
  document.getElementById("logout").hidden = true;
  document.body.classList.add("logged-out");
  loggingIn = login(main).then(async () => {
    loggingIn = null;
    document.body.classList.remove("logged-out");
    await started();
  });
  return loggingIn;
}

async function started() {
  const session = await call("GET", "/api/session");
  if (!session.authenticated) {
    await needLogin();
    return;
  }
  document.getElementById("logout").hidden = session.by !== "session";
  try {
    const instance = await get("/api/instance");
    const changed = instance.machine_id_changed ? " (the machine id changed: see the overview)" : "";
    document.getElementById("instance").textContent = `instance ${instance.instance_id}${changed}`;
  } catch {
    // Shown again at the next start.
  }
  await show();
}

window.addEventListener("hashchange", () => {
  if (!loggingIn) show();
});
window.addEventListener("toru:login", () => needLogin());
document.getElementById("logout").addEventListener("click", async () => {
  try {
    await call("DELETE", "/api/session");
  } finally {
    await needLogin();
  }
});

started().catch((e) => {
  replace(main, h("h1", {}, "torud cannot be reached"), h("p", { class: "error-text" }, e.message));
});
