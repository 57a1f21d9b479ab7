//! The gateway against real listeners, a [`support::FakeBackend`] and real
//! HTTP clients (hyper-util's, and raw sockets for what clients refuse to send).

/// Admin token: the file, and who must present it.
mod auth;
/// The backend the tests serve.
mod fake;
/// Forwarding to plugins and the bundle.
mod forward;
/// Shutdown, the connection cap, HTTP/2.
mod lifecycle;
/// Body, header and time limits.
mod limits;
/// Every route's answers and errors.
mod routes;
/// Browser sessions and the console's files.
mod sessions;
/// The fake backend, the test server and the clients.
mod support;
