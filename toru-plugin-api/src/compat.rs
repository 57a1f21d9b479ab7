//! Protocol 1: the messages of the first Toru host and of SDK 0.1, byte for
//! byte (`docs/PROTOCOL.md`, section 3), and [`PluginProtocol`] to read and
//! write them on a stream. New plugins speak protocol 2 through
//! [`run`](crate::run) and need none of this.

pub use crate::protocol::PluginProtocol;
pub use crate::protocol::v1::*;
