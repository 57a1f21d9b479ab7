// hello's front end, mounted by the Toru console in hello's view. It uses only
// the api object the console hands it: api.fetch reaches hello's own routes
// (the console adds /api/plugins/route/hello), api.showToast says what
// happened. Everything shown is set as text.
window.ToruPlugins = window.ToruPlugins || {};
window.ToruPlugins["hello"] = {
  mounted: false,

  mount(container, api) {
    this.mounted = true;
    const el = (tag, text) => {
      const node = document.createElement(tag);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const greeting = el("p", "Asking hello…");
    greeting.id = "hello-greeting";
    const instance = el("p");
    instance.id = "hello-instance";
    const input = el("input");
    input.id = "hello-value";
    input.type = "text";
    input.value = "blue";
    input.setAttribute("aria-label", "A value to store");
    const store = el("button", "Store it in hello's KV");
    store.id = "hello-store";
    store.type = "button";
    const stored = el("p");
    stored.id = "hello-stored";
    container.replaceChildren(el("h2", "Hello"), greeting, instance, input, store, stored);

    api.fetch("/")
      .then((response) => response.json())
      .then((answer) => {
        greeting.textContent = answer.message;
        instance.textContent = `instance ${answer.instance_id}`;
      })
      .catch((e) => {
        greeting.textContent = `hello did not answer: ${e.message}`;
      });

    store.addEventListener("click", async () => {
      try {
        const put = await api.fetch("/kv/console-note", { method: "PUT", body: input.value });
        if (!put.ok) throw new Error(`PUT answered ${put.status}`);
        const back = await api.fetch("/kv/console-note");
        stored.textContent = `stored: ${await back.text()}`;
        api.showToast("Stored in hello's KV", "success");
      } catch (e) {
        stored.textContent = "";
        api.showToast(`Could not store: ${e.message}`, "error");
      }
    });
  },

  unmount(container) {
    this.mounted = false;
    container.replaceChildren();
  },
};
