// A plugin's page: what it is, its state, its recent output (followed live
// while the page is open), its events and its stored keys.

import { ApiError, get, post, segment } from "./api.js";
import { bytes, duration, h, replace, since, stateBadge } from "./dom.js";
import { eventsTable } from "./overview.js";
import { actions } from "./plugins.js";

const FOLLOW_EVERY_MS = 2000;

/** Draws the page of plugin `id`; returns a function that stops following its logs. */
export async function pluginPage(main, id, refresh) {
  const p = await get(`/api/plugins/${segment(id)}`);
  const [events, keys] = await Promise.all([
    get(`/api/events?plugin=${segment(id)}&limit=20`).catch(() => ({ events: [] })),
    p.state === "invalid"
      ? Promise.resolve(null)
      : post(`/api/plugins/${segment(id)}/kv`, { action: "list", prefix: "" }).catch((e) => e),
  ]);
  const logs = h("pre", { class: "logs", id: "logs", tabindex: "0", "aria-label": `Output of ${p.name}` });
  replace(main,
    h("h1", {}, h("span", { class: "plugin-icon", "aria-hidden": "true" }, p.icon), " ", p.name),
    h("section", { class: "card" },
      h("dl", { class: "facts" },
        h("dt", {}, "Id"), h("dd", { class: "mono" }, p.id),
        h("dt", {}, "State"), h("dd", {}, stateBadge(p), ` (health: ${p.health})`),
        p.error ? [h("dt", {}, "Error"), h("dd", { class: "error-text" }, p.error)] : null,
        h("dt", {}, "Version"), h("dd", {}, p.version || "—"),
        h("dt", {}, "Author"), h("dd", {}, p.author || "—"),
        h("dt", {}, "Route"), h("dd", { class: "mono" }, p.route || "—"),
        h("dt", {}, "Protocol"), h("dd", {}, String(p.protocol)),
        h("dt", {}, "Executable"), h("dd", { class: "mono" }, p.path),
        h("dt", {}, "Process"), h("dd", {}, p.pid ? `pid ${p.pid}, up ${duration(since(p.running_since))}` : "—"),
        h("dt", {}, "Restarts"), h("dd", {}, String(p.restarts)),
        h("dt", {}, "Memory"), h("dd", {}, bytes(p.memory_bytes)),
        h("dt", {}, "cgroup"), h("dd", { class: "mono" }, p.cgroup || "—")),
      h("div", { class: "buttons" },
        actions(p, refresh),
        p.enabled && p.state !== "invalid" ? h("a", { class: "button", href: `#/view/${segment(p.id)}` }, "Open its view") : null)),
    h("h2", {}, "Output"),
    logs,
    h("h2", {}, "Events"),
    eventsTable(events.events || []),
    h("h2", {}, "Stored keys"),
    keysList(keys));
  let last = "";
  const follow = async () => {
    try {
      const page = await get(`/api/plugins/${segment(id)}/logs?page_size=200`);
      const lines = page.logs || [];
      const mark = lines.length ? `${page.total}|${lines[lines.length - 1].timestamp}|${lines[lines.length - 1].message}` : "";
      if (mark === last) return;
      last = mark;
      const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      replace(logs, lines.length === 0 ? "(nothing yet)" : lines.map((l) =>
        h("span", { class: `level-${l.level}` }, `${l.timestamp}  ${l.level.padEnd(5)}  ${l.message}\n`)));
      if (atEnd) logs.scrollTop = logs.scrollHeight;
    } catch {
      // The next round tries again; a lost session shows the login form.
    }
  };
  await follow();
  const timer = setInterval(follow, FOLLOW_EVERY_MS);
  return () => clearInterval(timer);
}

function keysList(keys) {
  if (keys === null) return h("p", { class: "muted" }, "An invalid plugin has no storage.");
  if (keys instanceof ApiError || keys instanceof Error) return h("p", { class: "error-text" }, keys.message);
  const list = keys.keys || [];
  if (list.length === 0) return h("p", { class: "muted" }, "No key stored.");
  return h("div", {},
    h("ul", { class: "mono", id: "keys" }, list.map((k) => h("li", {}, k))),
    keys.truncated ? h("p", { class: "hint" }, "Only the first keys are shown.") : null);
}
