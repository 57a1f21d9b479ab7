// The login form: the admin token in, a session cookie back.

import { ApiError, call } from "./api.js";
import { h, replace } from "./dom.js";

/** Shows the form in `main`; resolves once logged in. */
export function login(main) {
  return new Promise((resolve) => {
    const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true });
    const message = h("p", { class: "error-text", role: "alert" });
    const button = h("button", { type: "submit", class: "primary" }, "Log in");
    const form = h("form", { class: "login card", id: "login" },
      h("h1", {}, "Log in to Toru"),
      h("label", { for: "token" }, "Admin token"),
      input,
      h("p", { class: "hint" }, "As root on the server: cat /var/lib/toru/admin.token"),
      message,
      h("div", { class: "buttons" }, button));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      message.textContent = "";
      try {
        await call("POST", "/api/session", { token: input.value });
        resolve();
      } catch (e) {
        message.textContent = e instanceof ApiError && e.status === 401
          ? "That is not the admin token."
          : e.message;
        input.select();
      } finally {
        button.disabled = false;
      }
    });
    replace(main, form);
    input.focus();
  });
}
