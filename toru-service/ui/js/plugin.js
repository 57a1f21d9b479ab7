// A plugin's page: what it is, its state, its recent output (followed live
// while the page is open), its events and its stored keys.

import { ApiError, del, get, post, put, segment } from "./api.js";
import { bytes, duration, h, licenseBadge, replace, since, stateBadge } from "./dom.js";
import { eventsTable } from "./overview.js";
import { actions } from "./plugins.js";
import { showToast } from "./toast.js";

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
        h("dt", {}, "Restarts"), h("dd", {}, p.manual_restarts
          ? `${p.restarts} after crashes (and ${p.manual_restarts} by request)`
          : `${p.restarts} after crashes`),
        h("dt", {}, "Last exit"), h("dd", { id: "last-exit" }, p.last_exit
          ? `${p.last_exit.at}: ${p.last_exit.reason}` : "—"),
        h("dt", {}, "Memory"), h("dd", {}, bytes(p.memory_bytes)),
        h("dt", {}, "cgroup"), h("dd", { class: "mono" }, p.cgroup || "—")),
      h("div", { class: "buttons" },
        actions(p, refresh),
        p.enabled && p.state !== "invalid" ? h("a", { class: "button", href: `#/view/${segment(p.id)}` }, "Open its view") : null)),
    p.state === "invalid" ? null : licenseSection(p, refresh),
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
        h("span", { class: `level-${l.level}` }, `${l.timestamp}  ${l.level.padEnd(5)}  ${l.message}${keyValues(l.fields)}\n`)));
      if (atEnd) logs.scrollTop = logs.scrollHeight;
    } catch {
      // The next round tries again; a lost session shows the login form.
    }
  };
  await follow();
  const timer = setInterval(follow, FOLLOW_EVERY_MS);
  return () => clearInterval(timer);
}

/** A log line's fields after its message, as toructl writes them: `  note=n1 why="disk full"`. */
function keyValues(fields) {
  const entries = Object.entries(fields || {});
  if (entries.length === 0) return "";
  const bare = /^[^\s"=\p{Cc}]+$/u;
  return "  " + entries.map(([k, v]) =>
    `${k}=${typeof v === "string" ? (bare.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v)}`).join(" ");
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

/** What the licence is, and the form to install (or remove) one. A plugin
 * that needs none still takes one, kept for it unverified: the first host's
 * plugins checked theirs themselves. */
function licenseSection(p, refresh) {
  const license = p.license || {};
  const needed = license.required || license.status !== "not_required" || license.installed;
  const text = h("textarea", {
    id: "license-text", rows: "3", spellcheck: "false", autocomplete: "off",
    placeholder: "toru-license-v1.…", "aria-describedby": "license-hint",
  });
  const install = h("button", { type: "submit", class: "primary", id: "license-install" }, "Install");
  const form = h("form", { id: "license-form" },
    h("label", { for: "license-text" }, "Licence from the vendor"),
    text,
    h("p", { class: "hint", id: "license-hint" },
      "torud checks it (signature, plugin, this instance, dates) before keeping it; the plugin restarts with it."),
    h("div", { class: "buttons" }, install));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const line = text.value.trim();
    if (!line) {
      showToast("Paste the licence first.", "error");
      text.focus();
      return;
    }
    install.disabled = true;
    try {
      const before = await get(`/api/plugins/${segment(p.id)}`);
      const answer = await put(`/api/plugins/${segment(p.id)}/license`, line);
      showToast(`${p.name}: licence installed (${answer.status})`, "success");
      await settled(before);
      await refresh();
    } catch (e) {
      showToast(`${p.name}: ${e.message}`, "error");
      install.disabled = false;
    }
  });
  const remove = license.installed
    ? h("button", { type: "button", id: "license-remove" }, "Remove the licence")
    : null;
  if (remove) {
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Remove the licence of ${p.name}? It restarts without it.`)) return;
      remove.disabled = true;
      try {
        const before = await get(`/api/plugins/${segment(p.id)}`);
        await del(`/api/plugins/${segment(p.id)}/license`);
        showToast(`${p.name}: licence removed`, "success");
        await settled(before);
        await refresh();
      } catch (e) {
        showToast(`${p.name}: ${e.message}`, "error");
        remove.disabled = false;
      }
    });
  }
  return [
    h("h2", {}, "Licence"),
    h("section", { class: "card", id: "license" },
      h("dl", { class: "facts" },
        h("dt", {}, "Status"), h("dd", { id: "license-status" }, licenseBadge(license)),
        license.error ? [h("dt", {}, "Why"), h("dd", { class: "error-text" }, license.error)] : null,
        h("dt", {}, "Licensee"), h("dd", {}, license.licensee || "—"),
        h("dt", {}, "Expires"), h("dd", {}, license.expires
          ? `${license.expires}${license.expires_in_seconds > 0 ? ` (in ${duration(license.expires_in_seconds)})` : ""}`
          : license.installed ? "never" : "—"),
        h("dt", {}, "Required"), h("dd", {}, license.required ? "yes: it does not run without one" : "no")),
      needed ? form : h("details", {}, h("summary", {}, "Install a licence"), form),
      remove ? h("div", { class: "buttons" }, remove) : null),
  ];
}

/** The states a start ends in, for now. */
const SETTLED = new Set(["running", "backoff", "failed", "invalid"]);

/** Waits (a few seconds at most) for the restart a licence change causes. */
async function settled(before) {
  // torud restarts only a plugin that runs or tries to.
  if (["disabled", "invalid", "stopped"].includes(before.state)) return;
  for (let i = 0; i < 40; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = await get(`/api/plugins/${segment(before.id)}`).catch(() => null);
    if (!now) return;
    const moved = now.state_since !== before.state_since || now.pid !== before.pid;
    if (moved && SETTLED.has(now.state)) return;
  }
}
