// A plugin's own view: its bundle (`/api/plugins/{id}/bundle.js`) is loaded
// as a script of this origin, registers itself under window.ToruPlugins[id]
// (or window["toru_plugin_" + id]), and is mounted with the api object the
// deployed bundles were written against. Whatever goes wrong is said in the
// page, with a way to the plugin's logs; the console goes on working.

import { call, get, segment } from "./api.js";
import { h, replace } from "./dom.js";
import { showToast } from "./toast.js";

/** Bundles larger than this are not loaded. */
const MAX_BUNDLE_BYTES = 8 * 1024 * 1024;

/** The api object a bundle gets. */
function apiFor(plugin) {
  const base = `/api/plugins/route${plugin.route}`;
  const kv = (body) => call("POST", `/api/plugins/${segment(plugin.id)}/kv`, body);
  return Object.freeze({
    // Below the plugin: "/items?x=1" goes to the plugin as "/items?x=1".
    fetch: (path = "/", options = {}) => {
      const below = String(path).startsWith("/") ? String(path) : `/${path}`;
      return window.fetch(base + below, { credentials: "same-origin", ...options });
    },
    kv: Object.freeze({
      get: async (key) => (await kv({ action: "get", key: String(key) })).value,
      set: async (key, value) => {
        const text = typeof value === "string" ? value : JSON.stringify(value);
        await kv({ action: "set", key: String(key), value: text });
      },
      delete: async (key) => {
        await kv({ action: "delete", key: String(key) });
      },
      list: async (prefix = "") => (await kv({ action: "list", prefix: String(prefix) })).keys,
    }),
    navigate: (path) => {
      const to = String(path);
      window.location.hash = `#${to.startsWith("/") ? to : `/${to}`}`;
    },
    showToast: (message, type) => showToast(message, type),
  });
}

/** What a problem looks like: said in words, with the way to the logs. */
function problem(plugin, title, detail) {
  return h("div", { class: "problem", role: "alert", id: "view-problem" },
    h("p", {}, h("strong", {}, title)),
    detail ? h("p", {}, detail) : null,
    h("p", {}, h("a", { href: `#/plugins/${segment(plugin.id)}` }, `${plugin.name}: its state and logs`)));
}

/** Mounts plugin `id`'s view in `main`; returns what unmounts it. */
export async function view(main, id) {
  const plugin = await get(`/api/plugins/${segment(id)}`);
  const container = h("div", { class: "plugin-root", id: "plugin-root" });
  const frame = h("section", { class: "view-frame", "aria-label": `${plugin.name}'s view` }, container);
  replace(main, h("h1", {}, h("span", { class: "plugin-icon", "aria-hidden": "true" }, plugin.icon), " ", plugin.name), frame);
  if (plugin.state !== "running") {
    const why = plugin.error ? `${plugin.state}: ${plugin.error}` : plugin.state;
    replace(frame, problem(plugin, `${plugin.name} is not running (${why}).`,
      plugin.state === "disabled" ? "Enable it on its page to use its view." : null));
    return () => {};
  }
  const url = `/api/plugins/${segment(id)}/bundle.js`;
  let head;
  try {
    head = await fetch(url, { method: "HEAD", credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    replace(frame, problem(plugin, "Its front end could not be asked for.", e.message));
    return () => {};
  }
  if (!head.ok) {
    replace(frame, problem(plugin, `${plugin.name} has no front end (torud answered ${head.status}).`));
    return () => {};
  }
  const type = head.headers.get("content-type") || "";
  const size = Number(head.headers.get("content-length") || 0);
  if (!/javascript/i.test(type)) {
    replace(frame, problem(plugin, `Its front end is not JavaScript (${type || "no type"}).`));
    return () => {};
  }
  if (size > MAX_BUNDLE_BYTES) {
    replace(frame, problem(plugin, `Its front end is too large to load (${(size / 1048576).toFixed(1)} MiB).`));
    return () => {};
  }

  const failures = [];
  const onError = (event) => {
    if (String(event.filename || "").includes(url)) failures.push(event.message || "an error");
  };
  window.addEventListener("error", onError);
  const script = h("script", { src: url, "data-plugin": id });
  const loaded = await new Promise((resolve) => {
    script.addEventListener("load", () => resolve(true));
    script.addEventListener("error", () => resolve(false));
    document.head.append(script);
  });
  window.removeEventListener("error", onError);
  if (!loaded || failures.length > 0) {
    script.remove();
    replace(frame, problem(plugin, "Its front end failed to load.", failures.join("; ") || "the script could not be loaded"));
    return () => {};
  }
  const registry = window.ToruPlugins || {};
  const bundle = registry[id] || window[`toru_plugin_${id}`];
  if (!bundle || typeof bundle.mount !== "function") {
    script.remove();
    replace(frame, problem(plugin, "Its front end registered no view.",
      `It must set window.ToruPlugins["${id}"] (or window["toru_plugin_${id}"]) to an object with mount(container, api).`));
    return () => {};
  }
  const fail = (e) => {
    replace(frame, problem(plugin, "Its view failed.", e && e.message ? e.message : String(e)));
  };
  try {
    const mounted = bundle.mount(container, apiFor(plugin));
    if (mounted && typeof mounted.then === "function") mounted.then(null, fail);
  } catch (e) {
    fail(e);
  }
  return () => {
    try {
      if (typeof bundle.unmount === "function") bundle.unmount(container);
    } catch (e) {
      showToast(`${plugin.name}: its view failed to close: ${e.message}`, "error");
    }
    script.remove();
  };
}
