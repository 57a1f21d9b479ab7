// The sidebar's plugin views: every enabled plugin with its icon, name and a
// health dot, as the first host showed them.

import { dotClass, h, replace } from "./dom.js";

/** Redraws the list from `plugins`; `current` is the id whose view is open. */
export function drawSidebar(plugins, current) {
  const list = document.getElementById("plugin-links");
  if (!list) return;
  const shown = plugins.filter((p) => p.enabled && p.state !== "invalid");
  replace(list, shown.map((p) =>
    h("li", {},
      h("a", { href: `#/view/${encodeURIComponent(p.id)}`, "aria-current": p.id === current ? "page" : null },
        h("span", { class: `dot ${dotClass(p)}`, "aria-hidden": "true" }),
        h("span", { class: "plugin-icon", "aria-hidden": "true" }, p.icon),
        h("span", {}, p.name),
        h("span", { class: "visually-hidden" }, ` (${p.state})`)))));
  if (shown.length === 0) {
    list.append(h("li", { class: "hint side-empty" }, "No plugin enabled"));
  }
}

/** Marks the section link of `route` (`#/`, `#/plugins`) as the current page. */
export function markSection(route) {
  for (const link of document.querySelectorAll(".sections a")) {
    if (link.getAttribute("href") === route) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}
