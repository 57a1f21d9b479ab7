//! The plugins torud runs, as a domain of their own: discovery, one
//! supervisor per plugin (its restart policy apart from its I/O), the
//! connection to each, their logs, and their storage. Nothing here knows
//! HTTP statuses or the API's views: failures are [`error`]'s types, state is
//! plain data, and `crate::daemon` is the one adapter to the API.

/// What the administrator asks of a plugin.
pub(crate) mod command;
/// What every supervisor needs.
pub(crate) mod context;
/// Finding plugin executables and reading their metadata.
pub(crate) mod discovery;
/// Failures of forwarding and of commands, with their causes.
pub(crate) mod error;
/// What torud knows of one plugin, shared with the API.
pub(crate) mod handle;
/// A plugin's namespaces: torud's state and other plugins' sockets hidden.
pub(crate) mod isolation;
/// A protocol-2 plugin's storage calls.
pub(crate) mod kv;
/// Plugin processes an earlier torud left running.
pub(crate) mod leftovers;
/// Whether a plugin is licensed here.
pub(crate) mod license;
/// Forwarding requests in protocol 1 or 2.
pub(crate) mod link;
/// Plugin output: ring buffer and journal events.
pub(crate) mod logs;
/// Every plugin and its supervisor.
pub(crate) mod manager;
/// When a plugin that died is started again, and when it is given up on.
pub(crate) mod policy;
/// Starting, signalling and stopping plugin processes.
pub(crate) mod process;
/// Applying a rescan of the plugin folders (SIGHUP).
pub(crate) mod reload;
/// Forking children that die with torud.
pub(crate) mod spawner;
/// Keeping one plugin running: the I/O of its life.
pub(crate) mod supervisor;

pub(crate) use command::Command;
pub(crate) use context::Context;
pub(crate) use handle::{PluginHandle, State};
pub(crate) use manager::Manager;
