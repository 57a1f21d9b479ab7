// torud's HTTP API, as the console calls it: the browser's session cookie
// goes along (same origin), answers are JSON, errors are thrown as ApiError.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** `method path` with an optional `body` (JSON, or a string sent as text);
 * the answer's JSON. A 401 tells the page to show the login form. */
export async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (typeof body === "string") {
    options.headers["Content-Type"] = "text/plain; charset=utf-8";
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new ApiError(0, `torud cannot be reached (${e.message})`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const message = json && typeof json.error === "string" ? json.error : `torud answered ${response.status}`;
    if (response.status === 401 && path !== "/api/session") {
      window.dispatchEvent(new CustomEvent("toru:login"));
    }
    throw new ApiError(response.status, message);
  }
  return json;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const put = (path, body) => call("PUT", path, body);
export const del = (path) => call("DELETE", path);

/** A plugin's id as a path segment. */
export const segment = (id) => encodeURIComponent(id);
