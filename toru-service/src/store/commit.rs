//! Group commit for plugin KV writes. One thread takes every `kv_set` and `kv_delete`,
//! from all plugins: the writes that arrived while the previous commit was syncing go
//! into one write transaction, one fsync for all of them, and each caller hears back
//! only once that commit is durable. Under load many writes share a commit; alone, a
//! write costs what it did with a transaction of its own, without a hop to tokio's
//! blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tracing::debug;

use super::{Store, StoreError, StoreResult};

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// Most value bytes in one transaction: a burst of large values is split, so that one
/// commit does not hold the others back for long.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// One write to plugin KV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvWrite {
    /// Store `value` under `key`.
    Set {
        plugin: String,
        key: String,
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete { plugin: String, key: String },
}

impl KvWrite {
    fn bytes(&self) -> usize {
        match self {
            Self::Set { key, value, .. } => key.len() + value.len(),
            Self::Delete { key, .. } => key.len(),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvWritten {
    Set,
    /// Whether the key existed.
    Deleted(bool),
}

impl KvWritten {
    /// Whether the deleted key existed.
    pub(crate) fn existed(self) -> StoreResult<bool> {
        match self {
            Self::Deleted(existed) => Ok(existed),
            Self::Set => Err(StoreError::Database("a delete answered as a set".into())),
        }
    }
}

struct Job {
    write: KvWrite,
    done: oneshot::Sender<StoreResult<KvWritten>>,
}

/// The committing thread and the queue to it. Dropping it lets the thread finish
/// what was queued, and waits for it.
pub(crate) struct Committer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

/// Writes committed and the transactions that held them, since torud started.
#[derive(Debug, Default)]
struct Counts {
    writes: AtomicU64,
    commits: AtomicU64,
}

/// [`Counts`] read at one moment, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounts {
    /// KV writes committed.
    pub writes: u64,
    /// Write transactions that committed them.
    pub commits: u64,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the thread that commits for `store`.
    pub(crate) fn start(store: Arc<Store>) -> StoreResult<Self> {
        let (queue, jobs) = mpsc::channel();
        let path = store.path().to_owned();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        let thread = std::thread::Builder::new()
            .name("toru-kv-commit".into())
            .spawn(move || commit_loop(&store, &jobs, &counted))
            .map_err(|source| StoreError::Io { path, source })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            counts,
        })
    }

    /// What was committed so far.
    pub(crate) fn counts(&self) -> CommitCounts {
        CommitCounts {
            writes: self.counts.writes.load(Ordering::Relaxed),
            commits: self.counts.commits.load(Ordering::Relaxed),
        }
    }

    /// Queues `write` and waits until it is durable (or failed).
    pub(crate) async fn write(&self, write: KvWrite, path: &Path) -> StoreResult<KvWritten> {
        let (done, outcome) = oneshot::channel();
        let gone = || StoreError::Database(format!("the store of {} is closing", path.display()));
        self.queue
            .as_ref()
            .ok_or_else(gone)?
            .send(Job { write, done })
            .map_err(|_| gone())?;
        outcome.await.unwrap_or_else(|_| Err(gone()))
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes the first job waiting, then every other one already queued (up to the
/// batch limits), commits them together and answers each.
fn commit_loop(store: &Store, jobs: &mpsc::Receiver<Job>, counts: &Counts) {
    while let Ok(first) = jobs.recv() {
        let mut bytes = first.write.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    bytes += job.write.bytes();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let writes: Vec<&KvWrite> = batch.iter().map(|job| &job.write).collect();
        match store.kv_write_all(&writes) {
            Ok(outcomes) => {
                debug!(writes = batch.len(), "kv writes committed together");
                counts.commits.fetch_add(1, Ordering::Relaxed);
                counts
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.done.send(Ok(outcome));
                }
            }
            // One write's failure must not fail the others: each alone, then.
            Err(e) if batch.len() > 1 => {
                debug!(error = %e, writes = batch.len(), "a batch of kv writes failed; committing each alone");
                for job in batch {
                    let outcome = store.kv_write(&job.write);
                    if outcome.is_ok() {
                        counts.commits.fetch_add(1, Ordering::Relaxed);
                        counts.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = job.done.send(outcome);
                }
            }
            Err(e) => {
                if let Some(job) = batch.pop() {
                    let _ = job.done.send(Err(e));
                }
            }
        }
    }
}
