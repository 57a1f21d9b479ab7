//! The plugins torud runs, as a domain of their own: discovery, one
//! supervisor per plugin (its restart policy apart from its I/O), the
//! connection to each, their logs, and their storage. Nothing here knows
//! HTTP statuses or the API's views: failures are [`error`]'s types, state is
//! plain data, and `crate::daemon` is the one adapter to the API.

/// What the administrator asks of a plugin.
pub mod command;
/// What every supervisor needs.
pub mod context;
/// Finding plugin executables and reading their metadata.
pub mod discovery;
/// Failures of forwarding and of commands, with their causes.
pub mod error;
/// What torud knows of one plugin, shared with the API.
pub mod handle;
/// A plugin's namespaces: torud's state and other plugins' sockets hidden.
pub mod isolation;
/// A protocol-2 plugin's storage calls.
pub mod kv;
/// Plugin processes an earlier torud left running.
pub mod leftovers;
/// Forwarding requests in protocol 1 or 2.
pub mod link;
/// Plugin output: ring buffer and journal events.
pub mod logs;
/// Every plugin and its supervisor.
pub mod manager;
/// When a plugin that died is started again, and when it is given up on.
pub mod policy;
/// Starting and signalling plugin processes.
pub mod process;
/// Applying a rescan of the plugin folders (SIGHUP).
pub mod reload;
/// Forking children that die with torud.
pub mod spawner;
/// Keeping one plugin running: the I/O of its life.
pub mod supervisor;

pub use command::Command;
pub use context::Context;
pub use handle::{PluginHandle, State};
pub use manager::Manager;
