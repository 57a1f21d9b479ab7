//! One protocol-2 connection's plumbing, shared by both ends: the outbox every
//! task that talks on the connection writes into, and the table of requests this
//! end sent that still wait for an answer.
//!
//! Sending costs no hand-off to another task: a sender appends its frame to the
//! outbox and, when nobody is writing, writes the outbox to the socket itself with
//! non-blocking writes (one vectored `write(2)` for everything queued). A sender
//! that finds someone writing leaves its frame to them: under load many frames share
//! a system call. Only when the socket is full does the flusher task take over,
//! waiting for it to drain. Writes happen in plain functions, never across an
//! `.await`, so a sender cancelled mid-way can never leave half a frame.
//!
//! Two ways let frames share a write when many are sent close together. A reader
//! handling frames already in its buffer holds the link ([`Link::hold`]): what is
//! sent meanwhile waits, and goes out in one write when the reader is about to read
//! again. A request sent while others are in flight gathers ([`Link::call`]): its
//! sender queues it, lets every task already runnable go first (they may send too),
//! then writes everything queued.
//!
//! Requests this end sent time out by their deadline in the table, not by a timer
//! each: the link's one timer sleeps until the earliest deadline (the expirer task),
//! so a request costs a clock read instead of a timer registered and cleared.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
// tokio's clock, not std's: the same one the expirer's sleep follows (paused in tests).
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::{BadFrame, EncodedFrame};
use crate::error::{PluginError, PluginResult};
use crate::protocol::v2::{ErrorCode, Frame, Message};

/// Bytes queued before senders wait (backpressure): the peer is not reading.
const OUTBOX_LIMIT: usize = 4 * 1024 * 1024;
/// Pieces handed to one vectored write (Linux takes up to 1024).
const IOVECS: usize = 64;
/// Bytes a held link queues before it writes anyway: a batch, not a backlog.
const HELD_LIMIT: usize = 64 * 1024;

/// The requests this end sent that wait for an answer, and when the expirer next
/// looks at them.
#[derive(Debug, Default)]
struct Waiters {
    by_id: HashMap<u64, Waiter>,
    /// No later than the earliest deadline in `by_id` (it may be earlier: an answered
    /// request's deadline stays here until the expirer wakes and looks again).
    next_expiry: Option<Instant>,
    /// The latest requests this end gave up on (cancelled or timed out), oldest
    /// first: their answers may still come, and are no fault of the peer's.
    abandoned: VecDeque<u64>,
}

/// How many given-up requests [`Waiters::abandoned`] remembers.
const ABANDONED_KEPT: usize = 1024;

/// A request waiting for its answer.
#[derive(Debug)]
struct Waiter {
    answer: oneshot::Sender<Answer>,
    deadline: Instant,
}

/// What a waiting request gets.
#[derive(Debug)]
enum Answer {
    /// The peer's answer.
    Frame(Frame),
    /// None came before the deadline.
    Expired,
}

/// What waits to be written.
#[derive(Debug, Default)]
struct Outbox {
    pieces: VecDeque<Bytes>,
    /// An empty queue kept for the next writer to swap with `pieces`.
    spare: VecDeque<Bytes>,
    bytes: usize,
    /// Who writes: while someone does, the others only queue.
    writer: Writer,
    /// A reader holds the link ([`Link::hold`]): senders queue up to [`HELD_LIMIT`].
    held: bool,
}

/// Who writes the outbox to the socket: one at a time, so frames keep their order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Nobody: the next sender writes.
    #[default]
    Nobody,
    /// A sender that queued its frame and lets the tasks already runnable go first,
    /// gathering what they send; it writes when it is polled again (or dropped).
    Gathering,
    /// A sender, right now.
    Sender,
    /// The flusher task: the socket was full, and it waits for room.
    Flusher,
}

/// The sending half of a connection, shared by every task that talks on it.
#[derive(Debug)]
pub(crate) struct Link {
    outbox: Mutex<Outbox>,
    /// The socket's write half; taken (and so shut down) once closed and drained.
    socket: Mutex<Option<Arc<OwnedWriteHalf>>>,
    /// Wakes the flusher task: the socket was full, or the link closed.
    stalled: Notify,
    /// Wakes the sender first in line when the outbox has room.
    room: Notify,
    /// Senders that found the outbox full wait here, first come first served
    /// (tokio's `Mutex` is fair): only the one holding it retries, so that none
    /// loses the race for room again and again.
    line: tokio::sync::Mutex<()>,
    /// How many senders are in `line`: while any are, newcomers queue behind them.
    in_line: std::sync::atomic::AtomicUsize,
    waiting: Mutex<Waiters>,
    /// Wakes the expirer task: a request with an earlier deadline than it sleeps to.
    sooner: Notify,
    next_id: AtomicU64,
    closed: CancellationToken,
}

/// Polls `work` once, in the caller's task; whether it finished. Both ends run what
/// comes in this way first, and give it a task of its own only when it must wait.
pub(crate) async fn finished_at_once<F: Future<Output = ()>>(work: Pin<&mut F>) -> bool {
    let mut work = work;
    std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx).is_ready())).await
}

/// Counts a sender out of the line when it leaves it, sent or cancelled.
struct LeftLine<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for LeftLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A held link ([`Link::hold`]); writes what was queued meanwhile when dropped.
pub(crate) struct Held<'a>(&'a Link);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        {
            let mut outbox = self.0.outbox();
            outbox.held = false;
            if outbox.writer != Writer::Nobody || outbox.pieces.is_empty() {
                return;
            }
            outbox.writer = Writer::Sender;
        }
        let _ = self.0.write_as_writer();
    }
}

/// A reader's use of [`Link::hold`]: the link held from a read that leaves a whole
/// frame in the buffer until the read that would have to wait, so that the answers
/// to a batch of frames go out in one write.
pub(crate) struct Batch<'a> {
    link: &'a Link,
    held: Option<Held<'a>>,
}

impl<'a> Batch<'a> {
    pub(crate) fn new(link: &'a Link) -> Self {
        Self { link, held: None }
    }

    /// Before reading: lets the link go (writing what was held) unless `buffered`
    /// holds a whole frame, so that nothing waits while the reader does.
    pub(crate) fn before_read(&mut self, buffered: &[u8]) {
        if !crate::codec::holds_a_frame(buffered) {
            self.held = None;
        }
    }

    /// After reading a frame, before handling it: holds the link while `buffered`
    /// holds another.
    pub(crate) fn after_read(&mut self, buffered: &[u8]) {
        if self.held.is_none() && crate::codec::holds_a_frame(buffered) {
            self.held = Some(self.link.hold());
        }
    }
}

/// A gathering sender's turn to write: taken when it is dropped.
struct Gathered<'a>(&'a Link);

impl Drop for Gathered<'_> {
    fn drop(&mut self) {
        self.0.outbox().writer = Writer::Sender;
        let _ = self.0.write_as_writer();
    }
}

/// What became of a frame given to [`Link::try_send`].
enum Sent {
    /// Written, or queued behind the writer, who writes it.
    Written,
    /// Queued, with this sender the writer once it has let others go first.
    Gathering,
    /// The link is closed (or its socket failed).
    Closed,
    /// The outbox is full: the frame, back.
    Full(EncodedFrame),
}

/// Whether a flush wrote everything, or left the rest to the flusher task.
enum Flushed {
    All,
    Stalled,
    Failed,
}

impl Link {
    /// The link writing to `socket`, and its flusher task, which ends once the link
    /// is closed and what was queued before is written (or the socket failed).
    pub(crate) fn start(socket: OwnedWriteHalf) -> (Arc<Self>, JoinHandle<()>) {
        let link = Arc::new(Self {
            outbox: Mutex::new(Outbox::default()),
            socket: Mutex::new(Some(Arc::new(socket))),
            stalled: Notify::new(),
            room: Notify::new(),
            line: tokio::sync::Mutex::new(()),
            in_line: std::sync::atomic::AtomicUsize::new(0),
            waiting: Mutex::new(Waiters::default()),
            sooner: Notify::new(),
            next_id: AtomicU64::new(1),
            closed: CancellationToken::new(),
        });
        // It ends when the link closes, as the flusher does.
        tokio::spawn(expirer(link.clone()));
        let flusher = tokio::spawn(flusher(link.clone()));
        (link, flusher)
    }

    /// Writes one frame (or queues it behind the one being written); fails at once if
    /// it is too large or the link is closed. Waits only while the outbox is full.
    pub(crate) async fn send(&self, message: &Message, body: Bytes) -> PluginResult<()> {
        self.send_frame(EncodedFrame::from_parts(message, body)?, false)
            .await
    }

    /// [`Link::send`] of a frame already encoded; `gather`: let the tasks already
    /// runnable send theirs before writing, so that they share the write.
    async fn send_frame(&self, mut frame: EncodedFrame, gather: bool) -> PluginResult<()> {
        if self.in_line.load(Ordering::Acquire) == 0 {
            match self.try_send(frame, gather) {
                Sent::Written => return Ok(()),
                Sent::Gathering => {
                    // Writes when dropped: after the yield, or if the caller gives up
                    // meanwhile. A failed write closes the link, which the caller's
                    // answer then says.
                    let _writes = Gathered(self);
                    tokio::task::yield_now().await;
                    return Ok(());
                }
                Sent::Closed => return Err(PluginError::NotConnected),
                Sent::Full(back) => frame = back,
            }
        }
        // The outbox is full, or others already wait for room: wait in line.
        self.in_line.fetch_add(1, Ordering::AcqRel);
        let _left = LeftLine(&self.in_line);
        let _turn = tokio::select! {
            turn = self.line.lock() => turn,
            () = self.closed.cancelled() => return Err(PluginError::NotConnected),
        };
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(frame, false) {
                Sent::Written | Sent::Gathering => return Ok(()),
                Sent::Closed => return Err(PluginError::NotConnected),
                Sent::Full(back) => frame = back,
            }
            tokio::select! {
                () = room => {}
                () = self.closed.cancelled() => return Err(PluginError::NotConnected),
            }
        }
    }

    /// Holds this end's writes while the caller handles frames it has already read:
    /// what is sent until the guard drops is queued (up to [`HELD_LIMIT`] bytes), and
    /// written together when it drops. The caller drops it before it waits for input.
    pub(crate) fn hold(&self) -> Held<'_> {
        self.outbox().held = true;
        Held(self)
    }

    /// Queues one frame without waiting, for `Drop` code (a `cancel`); dropped when the
    /// outbox is full (the peer is not reading anyway) or the link closed.
    fn send_now(&self, frame: EncodedFrame) {
        let _ = self.try_send(frame, false);
    }

    /// Queues `frame`, and writes the outbox when nobody else is writing it (or, with
    /// `gather`, becomes the writer to write it soon); hands the frame back when the
    /// outbox is full.
    fn try_send(&self, frame: EncodedFrame, gather: bool) -> Sent {
        if self.closed.is_cancelled() {
            return Sent::Closed;
        }
        {
            let mut outbox = self.outbox();
            if outbox.bytes >= OUTBOX_LIMIT {
                return Sent::Full(frame);
            }
            outbox.push(frame);
            if outbox.writer != Writer::Nobody || (outbox.held && outbox.bytes < HELD_LIMIT) {
                return Sent::Written;
            }
            if gather {
                outbox.writer = Writer::Gathering;
                return Sent::Gathering;
            }
            outbox.writer = Writer::Sender;
        }
        self.write_as_writer()
    }

    /// Writes the outbox, as its writer.
    fn write_as_writer(&self) -> Sent {
        match self.flush() {
            Flushed::All => Sent::Written,
            Flushed::Stalled => {
                self.stalled.notify_one();
                Sent::Written
            }
            Flushed::Failed => {
                self.close();
                Sent::Closed
            }
        }
    }

    /// Writes the outbox until it is empty (the writer is then nobody) or the socket is
    /// full (the writer is then the flusher task). Only the writer calls it. When the
    /// socket fails, the writer is nobody again, and the flusher is woken to end.
    fn flush(&self) -> Flushed {
        let flushed = self.write_out();
        if let Flushed::Failed = flushed {
            self.outbox().writer = Writer::Nobody;
            self.stalled.notify_one();
        }
        flushed
    }

    fn write_out(&self) -> Flushed {
        let Some(socket) = self.socket() else {
            return Flushed::Failed;
        };
        // What is being written; swapped with the outbox's queue, so that neither
        // allocates once they have grown to the connection's usual batch.
        let mut pieces = VecDeque::new();
        loop {
            {
                let mut outbox = self.outbox();
                if outbox.pieces.is_empty() {
                    if pieces.capacity() > outbox.spare.capacity() {
                        outbox.spare = pieces;
                    }
                    outbox.writer = Writer::Nobody;
                    drop(outbox);
                    self.room.notify_waiters();
                    if self.closed.is_cancelled() {
                        // The flusher may be waiting to shut the socket.
                        self.stalled.notify_one();
                    }
                    return Flushed::All;
                }
                outbox.bytes = 0;
                if pieces.capacity() == 0 {
                    pieces = std::mem::take(&mut outbox.spare);
                }
                std::mem::swap(&mut outbox.pieces, &mut pieces);
            }
            // Everything taken goes out before anything queued meanwhile.
            while !pieces.is_empty() {
                let mut slices = [IoSlice::new(&[]); IOVECS];
                let mut count = 0;
                for (slot, piece) in slices.iter_mut().zip(&pieces) {
                    *slot = IoSlice::new(piece);
                    count += 1;
                }
                match socket.try_write_vectored(&slices[..count]) {
                    Ok(0) => return Flushed::Failed,
                    Ok(mut written) => {
                        while written > 0 {
                            let Some(first) = pieces.front_mut() else {
                                break;
                            };
                            if first.len() <= written {
                                written -= first.len();
                                pieces.pop_front();
                            } else {
                                first.advance(written);
                                written = 0;
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let mut outbox = self.outbox();
                        outbox.bytes += pieces.iter().map(Bytes::len).sum::<usize>();
                        while let Some(piece) = pieces.pop_back() {
                            outbox.pieces.push_front(piece);
                        }
                        outbox.spare = pieces;
                        outbox.writer = Writer::Flusher;
                        return Flushed::Stalled;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "write to the peer failed");
                        return Flushed::Failed;
                    }
                }
            }
        }
    }

    /// The socket's write half, while the link has it.
    fn socket(&self) -> Option<Arc<OwnedWriteHalf>> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let now = Instant::now();
        // A timeout too long to add is as good as none: a year.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let (sooner, others) = {
            let mut waiters = self.lock();
            waiters.by_id.insert(
                id,
                Waiter {
                    answer: tx,
                    deadline,
                },
            );
            let sooner = waiters.next_expiry.is_none_or(|next| deadline < next);
            if sooner {
                waiters.next_expiry = Some(deadline);
            }
            (sooner, waiters.by_id.len() > 1)
        };
        if sooner {
            self.sooner.notify_one();
        }
        let mut guard = Forget {
            link: self,
            id,
            cancel,
            answered: false,
        };
        // With other requests in flight, more are likely on their way (their answers
        // come in batches, and so do the requests that follow them): gather them.
        self.send_frame(EncodedFrame::from_parts(&request(id), body)?, others)
            .await?;
        let answer = match rx.await {
            Ok(Answer::Frame(frame)) => frame,
            // The guard tells the peer to stop working on it.
            Ok(Answer::Expired) => return Err(PluginError::Timeout(timeout)),
            Err(_) => {
                guard.cancel = None;
                return Err(PluginError::NotConnected);
            }
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
        let Some(waiter) = frame
            .message
            .id()
            .and_then(|id| self.lock().by_id.remove(&id))
        else {
            return false;
        };
        // The caller may have stopped waiting a moment ago: nothing to do then.
        let _ = waiter.answer.send(Answer::Frame(frame));
        true
    }

    /// Whether `id` is one of the latest requests this end gave up on: an answer to it
    /// crossed our `cancel` or came after the timeout, which is normal.
    pub(crate) fn gave_up_on(&self, id: u64) -> bool {
        self.lock().abandoned.contains(&id)
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
        self.lock().by_id.clear();
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
        {
            let mut waiters = self.link.lock();
            waiters.by_id.remove(&self.id);
            if waiters.abandoned.len() == ABANDONED_KEPT {
                waiters.abandoned.pop_front();
            }
            waiters.abandoned.push_back(self.id);
        }
        if let Some(cancel) = self.cancel
            && let Ok(frame) = EncodedFrame::from_parts(&cancel(self.id), Bytes::new())
        {
            self.link.send_now(frame);
        }
    }
}

impl Outbox {
    fn push(&mut self, frame: EncodedFrame) {
        let (head, body) = frame.into_wire();
        self.bytes += head.len();
        self.pieces.push_back(head);
        if let Some(body) = body {
            self.bytes += body.len();
            self.pieces.push_back(body);
        }
    }
}

/// Fails the requests whose deadline passed, sleeping until the earliest one; ends
/// when the link closes (whose waiters then get [`PluginError::NotConnected`]).
async fn expirer(link: Arc<Link>) {
    loop {
        let sooner = link.sooner.notified();
        tokio::pin!(sooner);
        sooner.as_mut().enable();
        let next = link.lock().next_expiry;
        match next {
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at) => link.expire(Instant::now()),
                () = sooner => {}
                () = link.closed.cancelled() => return,
            },
            None => tokio::select! {
                () = sooner => {}
                () = link.closed.cancelled() => return,
            },
        }
    }
}

impl Link {
    /// Answers every request whose deadline is `now` or earlier with
    /// [`Answer::Expired`], and notes the earliest deadline left.
    fn expire(&self, now: Instant) {
        let mut waiters = self.lock();
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for (&id, waiter) in &waiters.by_id {
            if waiter.deadline <= now {
                expired.push(id);
            } else if next.is_none_or(|n| waiter.deadline < n) {
                next = Some(waiter.deadline);
            }
        }
        waiters.next_expiry = next;
        for id in expired {
            if let Some(waiter) = waiters.by_id.remove(&id) {
                let _ = waiter.answer.send(Answer::Expired);
            }
        }
    }
}

/// Finishes the writes a sender could not (the socket was full), whenever one
/// stalls; once the link is closed, lets what was queued before be written and
/// shuts the socket's write side.
async fn flusher(link: Arc<Link>) {
    loop {
        let stalled = link.stalled.notified();
        tokio::pin!(stalled);
        stalled.as_mut().enable();
        let writer = link.outbox().writer;
        match writer {
            Writer::Flusher => {}
            Writer::Nobody if link.closed.is_cancelled() => break,
            // Closed while a sender writes: it wakes us once done (waiting on `closed`
            // too would return at once, again and again).
            Writer::Sender | Writer::Gathering if link.closed.is_cancelled() => {
                stalled.await;
                continue;
            }
            // Nothing to do, or a sender writing.
            Writer::Nobody | Writer::Sender | Writer::Gathering => {
                tokio::select! {
                    () = stalled => {}
                    () = link.closed.cancelled() => {}
                }
                continue;
            }
        }
        // Ours to write: wait for room in the socket, then write.
        let Some(socket) = link.socket() else { break };
        if socket.writable().await.is_err() {
            break;
        }
        drop(socket);
        if let Flushed::Failed = link.flush() {
            break;
        }
    }
    link.close();
    // Dropping the write half shuts the socket's write side: the peer reads the end.
    drop(
        link.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameCodec;
    use futures_util::StreamExt;
    use tokio_util::codec::FramedRead;

    fn pair() -> (
        Arc<Link>,
        JoinHandle<()>,
        FramedRead<tokio::net::UnixStream, FrameCodec>,
    ) {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let (_read, write) = ours.into_split();
        let (link, flusher) = Link::start(write);
        // `_read` dropped: nothing reads from the peer, which is fine for these tests.
        (link, flusher, FramedRead::new(theirs, FrameCodec::new()))
    }

    fn ping(id: u64) -> Message {
        Message::Ping { id }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn frames_from_many_senders_arrive_whole_and_each_sender_s_in_order() {
        let (link, _flusher, mut peer) = pair();
        let senders: Vec<_> = (0..16u64)
            .map(|s| {
                let link = link.clone();
                tokio::spawn(async move {
                    for i in 0..200u64 {
                        // Bodies small and large, so some go out as a piece of their own.
                        let body = Bytes::from(vec![s as u8; if i % 7 == 0 { 20_000 } else { 10 }]);
                        link.send(&ping(s * 1000 + i), body).await.unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u64; 16];
        for _ in 0..16 * 200 {
            let frame = peer.next().await.unwrap().unwrap().unwrap();
            let id = frame.message.id().unwrap();
            let (s, i) = ((id / 1000) as usize, id % 1000);
            assert_eq!(i, next[s], "sender {s}'s frames out of order");
            next[s] += 1;
            assert!(
                frame.body.iter().all(|b| *b == s as u8),
                "a body mixed with another"
            );
        }
        for sender in senders {
            sender.await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_does_not_read_holds_senders_back_and_loses_nothing() {
        let (link, _flusher, mut peer) = pair();
        let body = Bytes::from(vec![7u8; 256 * 1024]);
        let sent = Arc::new(AtomicU64::new(0));
        let sender = {
            let (link, body, sent) = (link.clone(), body.clone(), sent.clone());
            tokio::spawn(async move {
                for i in 0..64 {
                    link.send(&ping(i), body.clone()).await.unwrap();
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        // 16 MiB to send; the outbox holds about 4 MiB, the socket a little more.
        let held = sent.load(Ordering::SeqCst);
        assert!(
            held < 40,
            "{held} frames of 256 KiB sent to a peer that reads nothing"
        );
        assert!(link.outbox().bytes <= OUTBOX_LIMIT + body.len() + 64);
        for i in 0..64 {
            let frame = peer.next().await.unwrap().unwrap().unwrap();
            assert_eq!(frame.message.id(), Some(i));
            assert_eq!(frame.body, body);
        }
        sender.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn senders_waiting_for_room_go_first_come_first_served() {
        let (link, _flusher, mut peer) = pair();
        let body = Bytes::from(vec![1u8; 256 * 1024]);
        let wait_for_line = |n: usize| {
            let link = link.clone();
            async move {
                while link.in_line.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        // More than the outbox and the socket hold: the filler ends up in line.
        let filler = {
            let (link, body) = (link.clone(), body.clone());
            tokio::spawn(async move {
                for i in 0..40 {
                    link.send(&ping(i), body.clone()).await.unwrap();
                }
            })
        };
        wait_for_line(1).await;
        // Then nine more, each in line before the next comes.
        let mut waiters = Vec::new();
        for w in 0..9u64 {
            let (link, body) = (link.clone(), body.clone());
            waiters.push(tokio::spawn(async move {
                link.send(&ping(1000 + w), body).await.unwrap();
            }));
            wait_for_line(2 + w as usize).await;
        }
        // The peer reads now: the nine go out in the order they came.
        let mut order = Vec::new();
        for _ in 0..49 {
            let id = peer
                .next()
                .await
                .unwrap()
                .unwrap()
                .unwrap()
                .message
                .id()
                .unwrap();
            if id >= 1000 {
                order.push(id - 1000);
            }
        }
        assert_eq!(order, (0..9).collect::<Vec<_>>());
        filler.await.unwrap();
        for waiter in waiters {
            waiter.await.unwrap();
        }
    }

    #[tokio::test]
    async fn closing_writes_what_was_queued_then_the_peer_reads_the_end() {
        let (link, flusher, mut peer) = pair();
        for i in 0..3 {
            link.send(&ping(i), Bytes::new()).await.unwrap();
        }
        link.close();
        assert!(matches!(
            link.send(&ping(9), Bytes::new()).await,
            Err(PluginError::NotConnected)
        ));
        flusher.await.unwrap();
        for i in 0..3 {
            assert_eq!(
                peer.next().await.unwrap().unwrap().unwrap().message.id(),
                Some(i)
            );
        }
        assert!(peer.next().await.is_none(), "the peer reads the end");
    }

    /// A peer that reads requests and never answers them; what it read.
    fn silent_peer(
        mut peer: FramedRead<tokio::net::UnixStream, FrameCodec>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Message> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(Ok(frame))) = peer.next().await {
                let _ = tx.send(frame.message);
            }
        });
        rx
    }

    fn cancel(id: u64) -> Message {
        Message::Cancel { id }
    }

    /// A `ping` call on a task of its own.
    fn spawn_ping(
        link: &Arc<Link>,
        timeout: Duration,
        cancel: Option<fn(u64) -> Message>,
    ) -> JoinHandle<PluginResult<Frame>> {
        let link = link.clone();
        tokio::spawn(async move { link.call(ping, Bytes::new(), timeout, cancel).await })
    }

    /// The id of the next frame the peer reads.
    async fn next_id(peer: &mut FramedRead<tokio::net::UnixStream, FrameCodec>) -> u64 {
        let frame = peer.next().await.unwrap().unwrap().unwrap();
        frame.message.id().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn each_request_times_out_at_its_own_deadline_and_is_cancelled() {
        let (link, _flusher, peer) = pair();
        let mut read = silent_peer(peer);
        let started = Instant::now();
        let call = |timeout: u64| {
            let link = link.clone();
            tokio::spawn(async move {
                let result = link
                    .call(
                        ping,
                        Bytes::new(),
                        Duration::from_secs(timeout),
                        Some(cancel),
                    )
                    .await;
                (result.map(|_| ()), started.elapsed())
            })
        };
        // The long one first: the short one, sent later, must wake the expirer sooner.
        let long = call(30);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let short = call(2);
        // Bounded, so that an expirer that slept on would fail the test, not hang it.
        let (result, after) = tokio::time::timeout(Duration::from_secs(60), short)
            .await
            .expect("the short request never timed out")
            .unwrap();
        assert!(matches!(result, Err(PluginError::Timeout(_))), "{result:?}");
        assert_eq!(after.as_secs(), 3, "short one timed out after {after:?}");
        let (result, after) = long.await.unwrap();
        assert!(matches!(result, Err(PluginError::Timeout(_))), "{result:?}");
        assert_eq!(after.as_secs(), 30, "long one timed out after {after:?}");
        // Each was sent, then cancelled once it timed out.
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(read.recv().await.unwrap());
        }
        assert!(
            matches!(seen[..], [
            Message::Ping { id: a },
            Message::Ping { id: b },
            Message::Cancel { id: c },
            Message::Cancel { id: d },
        ] if c == b && d == a),
            "{seen:?}"
        );
        assert!(link.lock().by_id.is_empty());
        assert!(
            seen.iter()
                .filter_map(Message::id)
                .all(|id| link.gave_up_on(id)),
            "timed out, so given up on"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_is_not_expired_and_the_expirer_moves_on() {
        let (link, _flusher, mut peer) = pair();
        let answered = spawn_ping(&link, Duration::from_secs(5), Some(cancel));
        let id = next_id(&mut peer).await;
        assert!(link.answer(Frame::new(Message::Pong { id })));
        assert!(answered.await.unwrap().is_ok());
        // The expirer still wakes at the answered one's deadline and finds nothing;
        // a later request keeps its own full timeout.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let started = Instant::now();
        let late = link.call(ping, Bytes::new(), Duration::from_secs(5), Some(cancel));
        let late = tokio::time::timeout(Duration::from_secs(60), late)
            .await
            .expect("the late request never timed out");
        assert!(matches!(late, Err(PluginError::Timeout(_))), "{late:?}");
        assert_eq!(started.elapsed().as_secs(), 5);
    }

    #[tokio::test]
    async fn a_closed_link_fails_its_waiters_and_its_expirer_ends() {
        let (link, flusher, _peer) = pair();
        let waiting = spawn_ping(&link, Duration::from_secs(3600), None);
        while link.lock().by_id.is_empty() {
            tokio::task::yield_now().await;
        }
        link.close();
        assert!(matches!(
            waiting.await.unwrap(),
            Err(PluginError::NotConnected)
        ));
        flusher.await.unwrap();
        // Only the test's handle is left once the flusher and the expirer ended.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&link) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "a task still holds the link"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_request_given_up_on_is_remembered_so_its_late_answer_is_no_fault() {
        let (link, _flusher, mut peer) = pair();
        let call = spawn_ping(&link, Duration::from_secs(3600), Some(cancel));
        let id = next_id(&mut peer).await;
        call.abort();
        assert!(call.await.unwrap_err().is_cancelled());
        let frame = peer.next().await.unwrap().unwrap().unwrap();
        assert!(matches!(frame.message, Message::Cancel { id: c } if c == id));
        // The answer that crossed the cancel finds nobody, and is known for what it is.
        assert!(!link.answer(Frame::new(Message::Pong { id })));
        assert!(link.gave_up_on(id));
        assert!(!link.gave_up_on(id + 1), "an id never given up on");
    }

    #[tokio::test]
    async fn only_the_latest_requests_given_up_on_are_remembered() {
        let (link, _flusher, _peer) = pair();
        for id in 0..ABANDONED_KEPT as u64 + 10 {
            drop(Forget {
                link: &link,
                id,
                cancel: None,
                answered: false,
            });
        }
        assert_eq!(link.lock().abandoned.len(), ABANDONED_KEPT);
        assert!(!link.gave_up_on(9));
        assert!(link.gave_up_on(10));
        assert!(link.gave_up_on(ABANDONED_KEPT as u64 + 9));
    }

    /// A write that fails (the peer is gone) closes the link, and the flusher ends:
    /// it once spun on the closed link forever, holding a worker thread at 100 % CPU
    /// (torud then never reaped the dead plugin nor restarted it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_closes_the_link_and_the_flusher_ends() {
        let (link, flusher, peer) = pair();
        drop(peer);
        // The first write may still land in the socket's buffer; one soon fails.
        let mut failed = false;
        for i in 0..100 {
            if link.send(&ping(i), Bytes::new()).await.is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(failed, "writes to a closed peer kept succeeding");
        assert!(link.is_closed());
        assert_eq!(link.outbox().writer, Writer::Nobody);
        tokio::time::timeout(Duration::from_secs(10), flusher)
            .await
            .expect("the flusher did not end after the link failed")
            .unwrap();
    }

    /// The link, and the peer's end as a plain non-blocking socket: what was written
    /// can be read at once, and nothing else.
    async fn raw_pair() -> (Arc<Link>, JoinHandle<()>, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let (_read, write) = tokio::net::UnixStream::from_std(ours).unwrap().into_split();
        let (link, flusher) = Link::start(write);
        // tokio knows the socket is writable once its driver has said so: until then a
        // write would go to the flusher task.
        link.socket().unwrap().writable().await.unwrap();
        (link, flusher, theirs)
    }

    /// The whole frames written to the peer so far and not yet read (id and type).
    fn written(
        peer: &mut std::os::unix::net::UnixStream,
        buffer: &mut bytes::BytesMut,
    ) -> Vec<(u64, &'static str)> {
        use std::io::Read;
        use tokio_util::codec::Decoder;
        let mut chunk = [0u8; 65536];
        loop {
            match peer.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading the peer's end: {e}"),
            }
        }
        let mut codec = FrameCodec::new();
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(buffer).unwrap() {
            let message = frame.unwrap().message;
            frames.push((message.id().unwrap(), message.kind()));
        }
        frames
    }

    fn pings(ids: std::ops::RangeInclusive<u64>) -> Vec<(u64, &'static str)> {
        ids.map(|id| (id, "ping")).collect()
    }

    #[tokio::test]
    async fn frames_sent_while_the_link_is_held_go_out_together_when_it_is_released() {
        let (link, _flusher, mut peer) = raw_pair().await;
        let mut buffer = bytes::BytesMut::new();
        let held = link.hold();
        for id in 1..=3 {
            link.send(&ping(id), Bytes::new()).await.unwrap();
        }
        assert_eq!(written(&mut peer, &mut buffer), []);
        drop(held);
        assert_eq!(written(&mut peer, &mut buffer), pings(1..=3));
        // No longer held: written at once.
        link.send(&ping(4), Bytes::new()).await.unwrap();
        assert_eq!(written(&mut peer, &mut buffer), pings(4..=4));
    }

    #[tokio::test]
    async fn a_held_link_writes_anyway_once_a_batch_is_queued() {
        let (link, _flusher, mut peer) = raw_pair().await;
        let mut buffer = bytes::BytesMut::new();
        let _held = link.hold();
        let body = Bytes::from(vec![0u8; HELD_LIMIT / 8]);
        for id in 1..=7 {
            link.send(&ping(id), body.clone()).await.unwrap();
        }
        assert_eq!(written(&mut peer, &mut buffer), []);
        // The eighth takes the queue past HELD_LIMIT (the headers count too).
        link.send(&ping(8), body).await.unwrap();
        assert_eq!(written(&mut peer, &mut buffer), pings(1..=8));
    }

    #[tokio::test]
    async fn a_request_sent_while_others_are_in_flight_takes_what_is_sent_meanwhile_along() {
        use futures_util::FutureExt;
        let (link, _flusher, mut peer) = raw_pair().await;
        let mut buffer = bytes::BytesMut::new();
        let timeout = Duration::from_secs(60);
        // Alone in flight: written at once.
        let mut first = Box::pin(link.call(ping, Bytes::new(), timeout, None));
        assert!(first.as_mut().now_or_never().is_none());
        assert_eq!(written(&mut peer, &mut buffer), pings(1..=1));
        // With the first in flight, the second waits until its task is polled again,
        // and what others send meanwhile goes with it, behind it.
        let mut second = Box::pin(link.call(ping, Bytes::new(), timeout, None));
        assert!(second.as_mut().now_or_never().is_none());
        assert_eq!(written(&mut peer, &mut buffer), []);
        link.send(&ping(100), Bytes::new()).await.unwrap();
        assert_eq!(written(&mut peer, &mut buffer), []);
        assert!(second.as_mut().now_or_never().is_none());
        assert_eq!(
            written(&mut peer, &mut buffer),
            [(2, "ping"), (100, "ping")]
        );
    }

    #[tokio::test]
    async fn a_request_given_up_on_while_it_gathers_is_written_then_cancelled() {
        use futures_util::FutureExt;
        let (link, _flusher, mut peer) = raw_pair().await;
        let mut buffer = bytes::BytesMut::new();
        let timeout = Duration::from_secs(60);
        let mut first = Box::pin(link.call(ping, Bytes::new(), timeout, None));
        assert!(first.as_mut().now_or_never().is_none());
        let mut second = Box::pin(link.call(ping, Bytes::new(), timeout, Some(cancel)));
        assert!(second.as_mut().now_or_never().is_none());
        drop(second);
        assert_eq!(
            written(&mut peer, &mut buffer),
            [(1, "ping"), (2, "ping"), (2, "cancel")]
        );
        // Nothing is left gathering: the next frame goes out at once.
        link.send(&ping(100), Bytes::new()).await.unwrap();
        assert_eq!(written(&mut peer, &mut buffer), [(100, "ping")]);
    }
}
