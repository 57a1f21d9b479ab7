// Short messages in a corner, read out by screen readers (the region is
// aria-live), gone after a few seconds.

const KINDS = new Set(["success", "error", "info"]);

/** Shows `message`; `type` is success, error or info. */
export function showToast(message, type = "info") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const kind = KINDS.has(type) ? type : "info";
  const toast = document.createElement("div");
  toast.className = `toast ${kind}`;
  toast.textContent = String(message);
  region.append(toast);
  setTimeout(() => toast.remove(), kind === "error" ? 8000 : 4000);
}
