//! One protocol-2 connection's plumbing, shared by both ends: a writer task
//! that batches queued frames into the socket, and the table of requests this
//! end sent that still wait for an answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::codec::{BadFrame, EncodedFrame, FrameCodec};
use crate::error::{PluginError, PluginResult};
use crate::protocol::v2::{ErrorCode, Frame, Message};

/// Frames queued for the writer before senders wait (backpressure).
const OUTBOUND_QUEUE: usize = 1024;
/// Bytes the writer gathers before it must flush.
const WRITE_BATCH: usize = 256 * 1024;

type Waiters = HashMap<u64, oneshot::Sender<Frame>>;

/// The sending half of a connection, shared by every task that talks on it.
#[derive(Debug)]
pub(crate) struct Link {
    outbound: mpsc::Sender<EncodedFrame>,
    waiting: Mutex<Waiters>,
    next_id: AtomicU64,
    closed: CancellationToken,
}

impl Link {
    /// Starts the writer task on `io`; the task ends when the link is closed
    /// (after writing what was already queued) or the socket fails.
    pub(crate) fn start<W>(io: W) -> (Arc<Self>, JoinHandle<()>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let link = Arc::new(Self {
            outbound: tx,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: CancellationToken::new(),
        });
        let mut sink = FramedWrite::new(io, FrameCodec::new());
        // Let a burst of frames (even large ones) share one write(2): the
        // default boundary (8 KiB) flushes before every frame above that.
        sink.set_backpressure_boundary(WRITE_BATCH);
        let writer = tokio::spawn(write_loop(rx, sink, link.closed.clone()));
        (link, writer)
    }

    /// Queues one frame; fails at once if it is too large or the link is closed.
    pub(crate) async fn send(&self, message: &Message, body: Bytes) -> PluginResult<()> {
        let frame = EncodedFrame::from_parts(message, body)?;
        if self.closed.is_cancelled() {
            return Err(PluginError::NotConnected);
        }
        self.outbound
            .send(frame)
            .await
            .map_err(|_| PluginError::NotConnected)
    }

    /// Sends a request built around a fresh id and waits for its answer.
    ///
    /// If the caller stops waiting (timeout, or its future is dropped), the
    /// request is forgotten, and `cancel` (when given) is sent so the peer can
    /// stop working on it. An `error` answer is returned as [`PluginError::Remote`].
    pub(crate) async fn call(
        &self,
        request: impl FnOnce(u64) -> Message,
        body: Bytes,
        timeout: Duration,
        cancel: Option<fn(u64) -> Message>,
    ) -> PluginResult<Frame> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        let mut guard = Forget {
            link: self,
            id,
            cancel,
            answered: false,
        };
        self.send(&request(id), body).await?;
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => {
                guard.cancel = None;
                return Err(PluginError::NotConnected);
            }
            Err(_) => return Err(PluginError::Timeout(timeout)),
        };
        // `answer` already took the entry out of the table.
        guard.answered = true;
        match answer.message {
            Message::Error { code, message, .. } => Err(PluginError::Remote { code, message }),
            _ => Ok(answer),
        }
    }

    /// Hands an answer to the request waiting for it; false when no request
    /// of this end has its id.
    pub(crate) fn answer(&self, frame: Frame) -> bool {
        let Some(waiter) = frame.message.id().and_then(|id| self.lock().remove(&id)) else {
            return false;
        };
        // The caller may have stopped waiting a moment ago: nothing to do then.
        let _ = waiter.send(frame);
        true
    }

    /// Fails our request `id` with `error`, as if the peer had answered so:
    /// used when the peer's answer to it arrived unreadable.
    pub(crate) fn fail(&self, id: u64, code: ErrorCode, message: String) -> bool {
        self.answer(Frame::new(Message::error(Some(id), code, message)))
    }

    /// Deals with a frame that could not be read: a broken answer fails the
    /// request of ours it names; anything else is answered with `error`.
    pub(crate) async fn refuse(&self, bad: BadFrame) {
        if bad.answer {
            let failed = bad.id.is_some_and(|id| {
                self.fail(id, bad.code, format!("unreadable answer: {}", bad.reason))
            });
            if !failed {
                tracing::warn!(id = ?bad.id, "unreadable answer to no pending request; ignored");
            }
            return;
        }
        let reply = Message::error(bad.id, bad.code, bad.reason);
        if let Err(e) = self.send(&reply, Bytes::new()).await {
            tracing::debug!(error = %e, "error reply not sent");
        }
    }

    /// Closes the link: queued frames are still written, waiting callers get
    /// [`PluginError::NotConnected`], later sends fail.
    pub(crate) fn close(&self) {
        self.closed.cancel();
        self.lock().clear();
    }

    /// True once [`Link::close`] ran or the socket failed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the link is closed.
    #[cfg(feature = "host")]
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poisoning is ignored.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes an abandoned request from the table, and tells the peer.
struct Forget<'a> {
    link: &'a Link,
    id: u64,
    cancel: Option<fn(u64) -> Message>,
    answered: bool,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.link.lock().remove(&self.id);
        if let Some(cancel) = self.cancel
            && let Ok(frame) = EncodedFrame::from_parts(&cancel(self.id), Bytes::new())
        {
            // Best effort: a full queue means the peer is not reading anyway.
            let _ = self.link.outbound.try_send(frame);
        }
    }
}

async fn write_loop<W>(
    mut queue: mpsc::Receiver<EncodedFrame>,
    mut sink: FramedWrite<W, FrameCodec>,
    closed: CancellationToken,
) where
    W: AsyncWrite + Unpin,
{
    let closing = closed.cancelled();
    tokio::pin!(closing);
    loop {
        let first = tokio::select! {
            biased;
            frame = queue.recv() => frame,
            () = &mut closing => None,
        };
        let Some(first) = first else { break };
        // Everything already queued goes out with one flush: under load many
        // frames share a write(2).
        let mut result = sink.feed(first).await;
        while result.is_ok() {
            match queue.try_recv() {
                Ok(frame) => result = sink.feed(frame).await,
                Err(_) => break,
            }
        }
        if result.is_err() || sink.flush().await.is_err() {
            closed.cancel();
            return;
        }
    }
    // Closed: write what was queued before the close, then stop.
    queue.close();
    while let Some(frame) = queue.recv().await {
        if sink.feed(frame).await.is_err() {
            break;
        }
    }
    let _ = sink.flush().await;
}
