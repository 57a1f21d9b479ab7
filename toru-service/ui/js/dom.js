// Building the page from data: every text goes in with textContent, never
// as HTML, so whatever a plugin calls itself or logs is shown, not run.

/** An element: `h("a", {href: "#/"}, "text", child, ...)`. Attributes are
 * set as attributes (`on*` ones refused); children are nodes or text. */
export function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) throw new Error(`no inline handlers: ${name}`);
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Appends `children` (nodes, text, arrays of them) to `node`. */
export function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Empties `node` and puts `children` in it. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** The colour class of a plugin's dot: green running, amber starting or stopping, red
 * failed, invalid or crashing (backoff), grey disabled or stopped. */
export function dotClass(plugin) {
  switch (plugin.state) {
    case "running":
      return plugin.health === "healthy" ? "ok" : "bad";
    case "starting":
    case "stopping":
      return "warn";
    case "failed":
    case "invalid":
    case "backoff":
      return "bad";
    default:
      return "";
  }
}

/** A dot and the state in words: readable without colour. */
export function stateBadge(plugin) {
  return h("span", { class: "state" },
    h("span", { class: `dot ${dotClass(plugin)}`, "aria-hidden": "true" }),
    plugin.state);
}

/** "3m 51s", "2h 5m", "4d 1h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.floor(seconds));
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts = [];
  let rest = s;
  for (const [name, size] of units) {
    if (rest >= size || (name === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(rest / size)}${name}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/** "12.3 MiB". */
export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** Seconds since an RFC 3339 time, or null. */
export function since(timestamp) {
  if (!timestamp) return null;
  return (Date.now() - Date.parse(timestamp)) / 1000;
}

/** A plugin's licence in a few words, and how it should look: "valid until
 * 2027-06-30", "missing", "expired 2026-11-30", "—" when none is needed. */
export function licenseSummary(license) {
  if (!license) return { text: "—", tone: "" };
  const until = license.expires ? ` until ${license.expires}` : "";
  switch (license.status) {
    case "valid": {
      const soon = license.expires_in_seconds !== null && license.expires_in_seconds !== undefined
        && license.expires_in_seconds < 14 * 86400;
      return { text: `valid${until}`, tone: soon ? "warn" : "ok" };
    }
    case "missing":
      return { text: "missing", tone: "bad" };
    case "expired":
      return { text: `expired${license.expires ? ` ${license.expires}` : ""}`, tone: "bad" };
    case "invalid":
      return { text: "invalid", tone: license.required ? "bad" : "warn" };
    default:
      return { text: license.installed ? "kept unverified" : "—", tone: "" };
  }
}

/** The licence as a dot and words, like the state. */
export function licenseBadge(license) {
  const { text, tone } = licenseSummary(license);
  if (!tone) return h("span", { class: "muted license" }, text);
  return h("span", { class: "state license" },
    h("span", { class: `dot ${tone}`, "aria-hidden": "true" }), text);
}
