//! The HTTP gateway: torud's API on every listener (TCP and Unix), served
//! with hyper over HTTP/1.1 and HTTP/2.
//!
//! The gateway knows HTTP and nothing else: every answer comes from the
//! `Backend`, and every failure becomes a status in
//! `ApiError::status`, rendered by `respond`.
//!
//! # Routes
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/health` | `{"status":"ok"}`, never needs the token |
//! | GET | `/api/instance` | `{"instance_id": ..}` |
//! | GET | `/api/status` | `StatusView` |
//! | GET | `/api/plugins` | `[PluginView, ..]` |
//! | GET | `/api/plugins/{id}` | `PluginView` |
//! | POST | `/api/plugins/{id}/enable`, `/disable`, `/restart` | `{"success": true}` |
//! | GET | `/api/plugins/{id}/logs?page=&page_size=&level=` | `LogPage` |
//! | GET | `/api/events?plugin=&limit=` | `{"events": [..]}` |
//! | POST | `/api/plugins/{id}/kv` | what the backend answers, `{"value": ..}` |
//! | GET | `/api/plugins/{id}/bundle.js` | the plugin's script, `Cache-Control: no-store` |
//! | any | `/api/plugins/route/{route}/{rest}` | forwarded to the plugin as `/{rest}?query` |
//! | GET | `/api/store/backup` | a consistent copy of the store (a redb file), streamed |
//! | GET | `/metrics` | Prometheus text |
//!
//! GET routes answer HEAD too. Over TCP, every `/api/*` path but
//! `/api/health`, and `/metrics`, needs `Authorization: Bearer <token>`;
//! over a Unix socket the file's mode is the access control.
//!
//! # Layout
//!
//! `server` accepts and drives connections; `routes` matches a request to an
//! endpoint and calls the backend; the other modules are the pieces `routes`
//! uses.

/// Who is asking and whether they may: token, session, same-origin rule.
mod access;
/// The admin token: its file, and the constant-time check.
mod auth;
/// Reading request bodies under the size limit.
mod body;
/// The web console's embedded files.
mod console;
/// Forwarding to plugins: the request a plugin sees, the answer the client sees.
mod forward;
/// The legacy admin KV body.
mod kv;
/// What may stand for a plugin id or route in a path.
mod name;
/// Query strings of `/logs` and `/events`.
mod query;
/// `ApiError` and values as HTTP responses: the only place errors are rendered.
mod respond;
/// Routing and the handlers.
mod routes;
/// Listeners, connections, limits and graceful shutdown.
mod server;
/// Browser sessions and failed-login throttling.
mod session;
/// Tests against real listeners.
#[cfg(test)]
mod tests;

pub(crate) use auth::AdminToken;
pub use console::files as console_files;
pub use server::Listener;
pub(crate) use server::{HttpOptions, serve};
pub(crate) use session::SessionPolicy;

pub(crate) use name::is_name;
