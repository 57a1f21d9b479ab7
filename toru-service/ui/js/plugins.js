// Plugins: every plugin torud found, valid or not, with its state and what
// it uses, and the buttons to enable, disable and restart it.

import { post, segment } from "./api.js";
import { bytes, duration, h, licenseBadge, replace, since, stateBadge } from "./dom.js";
import { showToast } from "./toast.js";

/** Draws the table into `main` from `plugins`; `refresh()` reloads them. */
export function plugins(main, list, refresh) {
  const rows = list.map((p) => row(p, refresh));
  replace(main,
    h("h1", {}, "Plugins"),
    list.length === 0
      ? h("p", { class: "muted" }, "No plugin found: put executables in the plugin folders, then systemctl reload toru.")
      : h("div", { class: "table-wrap" },
        h("table", { id: "plugins" },
          h("thead", {}, h("tr", {},
            h("th", {}, "Plugin"),
            h("th", {}, "State"),
            h("th", {}, "Licence"),
            h("th", { class: "hide-narrow" }, "Version"),
            h("th", { class: "hide-narrow" }, "Restarts"),
            h("th", { class: "hide-narrow" }, "Up"),
            h("th", { class: "hide-narrow" }, "Memory"),
            h("th", { class: "hide-narrow" }, "CPU"),
            h("th", {}, "Actions"))),
          h("tbody", {}, rows))));
}

function row(p, refresh) {
  const running = p.state === "running";
  const name = h("a", { href: `#/plugins/${segment(p.id)}` }, p.name);
  return h("tr", { "data-plugin": p.id },
    h("td", {},
      h("span", { class: "plugin-icon", "aria-hidden": "true" }, p.icon), " ", name,
      p.name !== p.id ? h("div", { class: "hint mono" }, p.id) : null,
      p.error ? h("div", { class: "error-text" }, p.error) : null),
    h("td", { class: "plugin-state" }, stateBadge(p)),
    h("td", { class: "plugin-license" }, licenseBadge(p.license),
      p.license && p.license.licensee ? h("div", { class: "hint" }, p.license.licensee) : null),
    h("td", { class: "hide-narrow" }, p.version),
    h("td", { class: "hide-narrow" }, String(p.restarts)),
    h("td", { class: "hide-narrow" }, running ? duration(since(p.running_since)) : "—"),
    h("td", { class: "hide-narrow" }, bytes(p.memory_bytes)),
    h("td", { class: "hide-narrow" }, p.cpu_usec === null || p.cpu_usec === undefined ? "—" : `${(p.cpu_usec / 1e6).toFixed(1)} s`),
    h("td", { class: "actions" }, actions(p, refresh)));
}

/** Enable or disable, and restart; none for an invalid plugin. */
export function actions(p, refresh) {
  if (p.state === "invalid") return h("span", { class: "hint" }, "not startable");
  const enabled = p.state !== "disabled";
  return h("div", { class: "buttons" },
    button(p, enabled ? "disable" : "enable", enabled ? "Disable" : "Enable", refresh),
    button(p, "restart", "Restart", refresh, !enabled));
}

function button(p, action, label, refresh, disabled = false) {
  const node = h("button", { type: "button", "data-action": action, disabled, "aria-label": `${label} ${p.name}` }, label);
  node.addEventListener("click", async () => {
    node.disabled = true;
    try {
      await post(`/api/plugins/${segment(p.id)}/${action}`);
      showToast(`${p.name}: ${action === "enable" ? "enabled" : action === "disable" ? "disabled" : "restarting"}`, "success");
    } catch (e) {
      showToast(`${p.name}: ${action} failed: ${e.message}`, "error");
    }
    await refresh();
  });
  return node;
}
