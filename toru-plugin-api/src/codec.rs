//! Framing: every message of either protocol version is one frame.
//!
//! ```text
//! protocol 1:  +------------------+---------------------------------+
//!              | length N (u32 BE)| N bytes: one JSON document       |
//!              +------------------+---------------------------------+
//!
//! protocol 2:  +------------------+------------------+-------------+-----------+
//!              | length N (u32 BE)| header len H     | H bytes:    | N-4-H     |
//!              |                  | (u32 BE)         | JSON header | bytes:body|
//!              +------------------+------------------+-------------+-----------+
//! ```
//!
//! N is at most [`MAX_FRAME_LEN`]; a larger prefix is refused before anything
//! is allocated for it, and the connection must then be closed (the stream can
//! no longer be split into frames). A frame whose *content* is bad is reported
//! as an item of its own, so the connection survives it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Deserialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::error::PluginError;
use crate::protocol::v2::{ErrorCode, Frame, Message};

/// Largest frame, in bytes after the length prefix, either side may send (16 MiB).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The length-prefix codec both protocol versions use.
pub fn length_delimited() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Whether `buffered` (what a reader has read and not yet split) holds at least one
/// whole frame, so that reading the next one needs no system call.
pub(crate) fn holds_a_frame(buffered: &[u8]) -> bool {
    match buffered.first_chunk::<4>() {
        Some(prefix) => buffered.len() - 4 >= u32::from_be_bytes(*prefix) as usize,
        None => false,
    }
}

/// Protocol-1 codec: each frame is one JSON document, passed on as bytes.
pub type V1Codec = LengthDelimitedCodec;

/// A frame that was split off the stream intact but could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    /// The request id, when the header was readable enough to find one.
    pub id: Option<u64>,
    /// `bad_message` or `unknown_type`.
    pub code: ErrorCode,
    /// The frame's `type` is an answer (`http_response`, `kv_value`, ...):
    /// its id is one of the *receiver's* requests, which should then fail
    /// locally; replying `error` would name an id of the wrong side.
    pub answer: bool,
    /// What was wrong.
    pub reason: String,
}

/// A protocol-2 frame ready to be written: its header already serialized,
/// so that serialization happens in the caller's task and size errors reach
/// the caller instead of breaking the connection.
///
/// The header is serialized straight into the buffer the frame is written from,
/// behind room for the two length prefixes, with a small body copied after it: one
/// allocation and one piece to write. A large body stays where it lies, to be
/// written from there (a vectored write) rather than copied.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The length prefixes, the header, and the body when it is small.
    head: BytesMut,
    /// A body too large to copy into `head`; empty otherwise.
    body: Bytes,
}

/// Bodies up to this size are copied next to their header.
const COPIED_BODY: usize = 8 * 1024;
/// Room reserved for a header: most are well under this.
const HEADER_GUESS: usize = 256;

impl EncodedFrame {
    /// Serializes `frame`'s header and checks the whole fits in a frame.
    pub fn new(frame: &Frame) -> Result<Self, PluginError> {
        Self::from_parts(&frame.message, frame.body.clone())
    }

    /// Like [`EncodedFrame::new`], from the parts.
    pub fn from_parts(message: &Message, body: Bytes) -> Result<Self, PluginError> {
        let copied = body.len() <= COPIED_BODY;
        let mut head =
            BytesMut::with_capacity(8 + HEADER_GUESS + if copied { body.len() } else { 0 });
        head.put_u64(0);
        serde_json::to_writer((&mut head).writer(), message)?;
        let header_len = head.len() - 8;
        let len = 4 + header_len + body.len();
        if len > MAX_FRAME_LEN {
            return Err(PluginError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        // Both fit in a u32: `len` is at most MAX_FRAME_LEN.
        head[..4].copy_from_slice(&(len as u32).to_be_bytes());
        head[4..8].copy_from_slice(&(header_len as u32).to_be_bytes());
        if copied {
            head.put_slice(&body);
            return Ok(Self {
                head,
                body: Bytes::new(),
            });
        }
        Ok(Self { head, body })
    }

    /// The frame as it goes on the wire, in at most two pieces: the length prefixes and
    /// header (with a small body), then a large body as it is.
    pub(crate) fn into_wire(self) -> (Bytes, Option<Bytes>) {
        let head = self.head.freeze();
        match self.body.is_empty() {
            true => (head, None),
            false => (head, Some(self.body)),
        }
    }

    /// Bytes after the length prefix.
    pub fn len(&self) -> usize {
        self.head.len() - 4 + self.body.len()
    }

    /// Never true: a frame always holds its header length.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Protocol-2 codec: [`EncodedFrame`]s out, [`Frame`]s (or [`BadFrame`]s) in.
#[derive(Debug)]
pub struct FrameCodec {
    frames: LengthDelimitedCodec,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self {
            frames: length_delimited(),
        }
    }
}

impl FrameCodec {
    /// A codec with the protocol's limits.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Decoder for FrameCodec {
    type Item = Result<Frame, BadFrame>;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let Some(frame) = self.frames.decode(src).map_err(|e| too_big(e, src))? else {
            return Ok(None);
        };
        Ok(Some(parse_frame(frame)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let Some(frame) = self.frames.decode_eof(src).map_err(|e| too_big(e, src))? else {
            return Ok(None);
        };
        Ok(Some(parse_frame(frame)))
    }
}

/// `LengthDelimitedCodec`'s "frame size too big", with the length that came: it
/// leaves the prefix unread in `src` when it refuses one.
fn too_big(e: std::io::Error, src: &BytesMut) -> std::io::Error {
    let refused = e
        .get_ref()
        .is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>());
    match src.first_chunk::<4>() {
        Some(head) if refused => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a frame length of {} bytes, over the limit of {MAX_FRAME_LEN}",
                u32::from_be_bytes(*head)
            ),
        ),
        _ => e,
    }
}

impl Encoder<EncodedFrame> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: EncodedFrame, dst: &mut BytesMut) -> Result<(), Self::Error> {
        // Both pieces as they are (the prefixes are already in `head`), rather than
        // through `LengthDelimitedCodec::encode`, which wants one contiguous buffer.
        dst.reserve(item.head.len() + item.body.len());
        dst.put_slice(&item.head);
        dst.put_slice(&item.body);
        Ok(())
    }
}

/// Splits one frame into header and body and parses the header.
fn parse_frame(mut frame: BytesMut) -> Result<Frame, BadFrame> {
    if frame.len() < 4 {
        return Err(bad(None, "frame shorter than its 4-byte header length"));
    }
    if frame[0] == b'{' {
        return Err(bad(
            None,
            "frame is a bare JSON document: the peer speaks protocol 1, not 2",
        ));
    }
    let header_len = frame.get_u32() as usize;
    if header_len > frame.len() {
        return Err(bad(
            None,
            &format!(
                "header length {header_len} exceeds the {} bytes left in the frame",
                frame.len()
            ),
        ));
    }
    let header = frame.split_to(header_len);
    match Message::from_header(&header) {
        Ok(message) => Ok(Frame {
            message,
            body: frame.freeze(),
        }),
        Err(e) => Err(explain(&header, e)),
    }
}

/// The little that can be read from a header that failed to parse.
/// Fields typed loosely, so that a wrongly typed one does not hide the others.
#[derive(Deserialize)]
struct Salvage {
    #[serde(rename = "type")]
    kind: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
}

fn explain(header: &[u8], error: serde_json::Error) -> BadFrame {
    let salvage = serde_json::from_slice::<Salvage>(header).ok();
    let id = salvage
        .as_ref()
        .and_then(|s| s.id.as_ref())
        .and_then(serde_json::Value::as_u64);
    let kind = salvage
        .and_then(|s| s.kind)
        .and_then(|k| k.as_str().map(str::to_owned));
    match kind {
        Some(kind) if !Message::TYPES.contains(&kind.as_str()) => BadFrame {
            id,
            code: ErrorCode::UnknownType,
            answer: false,
            reason: format!("unknown message type {kind:?}"),
        },
        kind => BadFrame {
            answer: kind.is_some_and(|k| Message::ANSWER_TYPES.contains(&k.as_str())),
            ..bad(id, &format!("unreadable message header: {error}"))
        },
    }
}

fn bad(id: Option<u64>, reason: &str) -> BadFrame {
    BadFrame {
        id,
        code: ErrorCode::BadMessage,
        answer: false,
        reason: reason.to_owned(),
    }
}

/// Encodes `frame` into a fresh buffer (tests, tools and the docs' examples).
pub fn encode_to_vec(frame: &Frame) -> Result<Vec<u8>, PluginError> {
    let mut dst = BytesMut::new();
    FrameCodec::new().encode(EncodedFrame::new(frame)?, &mut dst)?;
    Ok(dst.to_vec())
}

#[cfg(test)]
mod tests;
