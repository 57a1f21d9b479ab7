//! Reading and writing protocol-1 messages on a stream.

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::v1::{HttpResponsePayload, Message, decode_http_response};
use crate::error::PluginResult;

/// A protocol-1 connection. Unlike SDK 0.1's, it keeps one buffer for the
/// stream's life, so bytes of a second message arriving with the first are
/// never lost.
#[derive(Debug)]
pub struct PluginProtocol<T> {
    frames: Framed<T, LengthDelimitedCodec>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> PluginProtocol<T> {
    /// Wraps a connected stream.
    pub fn new(io: T) -> Self {
        Self {
            frames: Framed::new(io, crate::codec::length_delimited()),
        }
    }

    /// Writes one message.
    pub async fn write_message(&mut self, message: &Message) -> PluginResult<()> {
        let json = serde_json::to_vec(message)?;
        self.frames.send(bytes::Bytes::from(json)).await?;
        Ok(())
    }

    /// Reads one frame's JSON bytes; `None` at end of stream.
    pub async fn read_frame(&mut self) -> PluginResult<Option<BytesMut>> {
        Ok(self.frames.next().await.transpose()?)
    }

    /// Reads one host-shaped message; `None` at end of stream.
    pub async fn read_message(&mut self) -> PluginResult<Option<Message>> {
        match self.read_frame().await? {
            Some(frame) => Ok(Some(serde_json::from_slice(&frame)?)),
            None => Ok(None),
        }
    }

    /// Reads a plugin's HTTP answer in either deployed shape; `None` at end
    /// of stream. Returns the answer's `request_id` with it.
    pub async fn read_http_response(
        &mut self,
    ) -> PluginResult<Option<(Option<String>, HttpResponsePayload)>> {
        match self.read_frame().await? {
            Some(frame) => decode_http_response(&frame).map(Some),
            None => Ok(None),
        }
    }

    /// The stream back.
    pub fn into_inner(self) -> T {
        self.frames.into_inner()
    }
}
