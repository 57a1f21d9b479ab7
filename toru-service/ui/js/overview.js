// Overview: what this torud is and does, and what happened lately.

import { get } from "./api.js";
import { duration, h, replace } from "./dom.js";

export async function overview(main) {
  const [status, events] = await Promise.all([get("/api/status"), get("/api/events?limit=15")]);
  const states = Object.entries(status.plugins || {});
  const warnings = status.warnings || [];
  replace(main,
    h("h1", {}, "Overview"),
    warnings.length === 0 ? null : h("section", { class: "notice", id: "warnings", role: "status" },
      h("h2", {}, "Needs attention"),
      h("ul", {}, warnings.map((w) => h("li", {}, w)))),
    h("section", { class: "card" },
      h("dl", { class: "facts" },
        h("dt", {}, "Instance"), h("dd", { class: "mono" }, status.instance_id),
        h("dt", {}, "Version"), h("dd", {}, `torud ${status.version}`),
        h("dt", {}, "Up"), h("dd", {}, duration(status.uptime_seconds)),
        h("dt", {}, "Listeners"), h("dd", {}, (status.listeners || []).join(", ")),
        h("dt", {}, "Plugins"),
        h("dd", {}, states.length === 0 ? "none" : states.map(([s, n]) => `${n} ${s}`).join(", ")))),
    h("h2", {}, "Latest events"),
    eventsTable(events.events || []));
}

/** Events, newest first. */
export function eventsTable(events) {
  if (events.length === 0) return h("p", { class: "muted" }, "No events yet.");
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Time"), h("th", {}, "Plugin"), h("th", {}, "Event"), h("th", {}, "Detail"))),
      h("tbody", {}, [...events].reverse().map((e) =>
        h("tr", {},
          h("td", { class: "mono" }, new Date(e.timestamp).toLocaleString()),
          h("td", {}, e.plugin || "torud"),
          h("td", {}, e.kind),
          h("td", {}, e.detail))))));
}
