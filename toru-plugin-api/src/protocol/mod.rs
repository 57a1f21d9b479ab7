//! Message types of both protocol versions, and plugin metadata.

/// What `PLUGIN --metadata` prints.
pub mod metadata;
/// Protocol 1 as deployed by the first host (legacy shapes).
pub mod v1;
/// Reading and writing protocol-1 messages on a stream.
mod v1_io;
/// Protocol 2: multiplexed, binary-safe, with host-kept storage.
pub mod v2;

pub use metadata::{LicenseSpec, PluginMetadata};
pub use v1_io::PluginProtocol;

/// The protocol version this SDK speaks, and states in `init`.
pub const PROTOCOL_VERSION: u32 = 2;
