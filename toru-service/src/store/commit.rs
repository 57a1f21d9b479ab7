//! Group commit for plugin KV writes. One thread takes every `kv_set` and `kv_delete`,
//! from all plugins: the writes that arrived while the previous commit was syncing go
//! into one write transaction, one fsync for all of them, and each caller hears back
//! only once that commit is durable. Under load many writes share a commit; alone, a
//! write costs what it did with a transaction of its own, without a hop to tokio's
//! blocking pool.
//!
//! Callers answered by one commit usually write again at once (a plugin setting keys
//! in a loop). Committing whatever is queued the moment the previous commit ends would
//! split steady writers into two groups that take turns, each write waiting for the
//! other group's commit and then its own. So a batch also waits a little for as many
//! writes as the previous commit answered, beyond those that were queued before its
//! answers went out: at most half the previous commit's time (PostgreSQL's advice for
//! `commit_delay`), never longer than [`MAX_WAIT`]. A lone writer never waits: the
//! previous commit answered one write, and its next write is that one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::debug;

use super::{Store, StoreError, StoreResult};

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// Most value bytes in one transaction: a burst of large values is split, so that one
/// commit does not hold the others back for long.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Longest a batch waits for the writers the previous commit answered.
const MAX_WAIT: Duration = Duration::from_millis(2);

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

/// Where the committing thread's batches go: the store. (A trait so that a test can
/// make a batch fail, which redb does not do on demand.)
pub(crate) trait Batches: Send + Sync + 'static {
    /// Applies `writes` in one transaction, or none of them.
    fn write_all(&self, writes: &[&KvWrite]) -> StoreResult<Vec<KvWritten>>;
}

impl Batches for Store {
    fn write_all(&self, writes: &[&KvWrite]) -> StoreResult<Vec<KvWritten>> {
        self.kv_write_all(writes)
    }
}

/// One write in a transaction of its own.
pub(crate) fn write_one<B: Batches>(batches: &B, write: &KvWrite) -> StoreResult<KvWritten> {
    batches
        .write_all(&[write])?
        .pop()
        .ok_or_else(|| StoreError::Database("a write had no outcome".into()))
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
        let path = store.path().to_owned();
        Self::start_with(store, path, MAX_WAIT)
    }

    /// Starts the thread that commits into `store` (`path`: for its errors), a batch
    /// waiting at most `max_wait` for the writers of the previous one.
    fn start_with<B: Batches>(
        store: Arc<B>,
        path: std::path::PathBuf,
        max_wait: Duration,
    ) -> StoreResult<Self> {
        let (queue, jobs) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        let thread = std::thread::Builder::new()
            .name("toru-kv-commit".into())
            .spawn(move || commit_loop(&*store, &jobs, &counted, max_wait))
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
/// batch limits), waits for the writers the previous commit answered (see the
/// module's doc), commits them together and answers each.
fn commit_loop<B: Batches>(
    store: &B,
    jobs: &mpsc::Receiver<Job>,
    counts: &Counts,
    max_wait: Duration,
) {
    // What the previous commit answered, how long it took, and the jobs that were
    // queued before its answers went out.
    let mut answered = 0;
    let mut took = Duration::ZERO;
    let mut carried: Option<Gathering> = None;
    loop {
        let mut batch = match carried.take() {
            Some(batch) => batch,
            None => match jobs.recv() {
                Ok(first) => Gathering::new(first, 0),
                Err(_) => return,
            },
        };
        batch.take_queued(jobs);
        let deadline = Instant::now() + (took / 2).min(max_wait);
        batch.wait_for(batch.carried + answered, deadline, jobs);

        let batch = batch.jobs;
        let writes: Vec<&KvWrite> = batch.iter().map(|job| &job.write).collect();
        let started = Instant::now();
        let written = store.write_all(&writes);
        took = started.elapsed();
        answered = batch.len();
        carried = Gathering::queued(jobs);
        match written {
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
                    let outcome = write_one(store, &job.write);
                    if outcome.is_ok() {
                        counts.commits.fetch_add(1, Ordering::Relaxed);
                        counts.writes.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = job.done.send(outcome);
                }
            }
            Err(e) => {
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.done.send(Err(e));
                }
            }
        }
    }
}

/// A batch being gathered, within the batch limits.
struct Gathering {
    jobs: Vec<Job>,
    bytes: usize,
    /// How many of `jobs` were queued before the previous commit's answers went out.
    carried: usize,
}

impl Gathering {
    fn new(first: Job, carried: usize) -> Self {
        Self {
            bytes: first.write.bytes(),
            jobs: vec![first],
            carried,
        }
    }

    /// What is queued now, if anything: the jobs that came while a commit ran.
    fn queued(jobs: &mpsc::Receiver<Job>) -> Option<Self> {
        let mut batch = Self::new(jobs.try_recv().ok()?, 0);
        batch.take_queued(jobs);
        batch.carried = batch.len();
        Some(batch)
    }

    fn len(&self) -> usize {
        self.jobs.len()
    }

    fn full(&self) -> bool {
        self.jobs.len() >= MAX_BATCH || self.bytes >= MAX_BATCH_BYTES
    }

    fn push(&mut self, job: Job) {
        self.bytes += job.write.bytes();
        self.jobs.push(job);
    }

    /// Adds what is queued already.
    fn take_queued(&mut self, jobs: &mpsc::Receiver<Job>) {
        while !self.full() {
            match jobs.try_recv() {
                Ok(job) => self.push(job),
                Err(_) => break,
            }
        }
    }

    /// Adds jobs as they come until the batch holds `count` or `deadline` passes.
    fn wait_for(&mut self, count: usize, deadline: Instant, jobs: &mpsc::Receiver<Job>) {
        while self.len() < count && !self.full() {
            let left = deadline.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(left) {
                Ok(job) => self.push(job),
                Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fall-back when a batch fails. A fake stands in for the store here: redb
    //! cannot be made to fail one transaction on demand; `store/tests.rs` runs the
    //! committer on a real redb file.
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Fails every batch holding the key `poison`; the first batch waits for `release`,
    /// so that the writes queued meanwhile go together in the next one.
    struct Fake {
        release: Mutex<Option<mpsc::Receiver<()>>>,
        batches: Mutex<Vec<Vec<String>>>,
    }

    impl Batches for Fake {
        fn write_all(&self, writes: &[&KvWrite]) -> StoreResult<Vec<KvWritten>> {
            let release = self.release.lock().unwrap().take();
            if let Some(release) = release {
                release.recv_timeout(Duration::from_secs(30)).unwrap();
            }
            let keys: Vec<String> = writes
                .iter()
                .map(|w| match w {
                    KvWrite::Set { key, .. } | KvWrite::Delete { key, .. } => key.clone(),
                })
                .collect();
            let poisoned = keys.iter().any(|k| k == "poison");
            self.batches.lock().unwrap().push(keys);
            if poisoned {
                return Err(StoreError::Database("the poison write".into()));
            }
            Ok(writes.iter().map(|_| KvWritten::Set).collect())
        }
    }

    async fn polled_once_is_pending<F: std::future::Future>(
        mut future: std::pin::Pin<&mut F>,
    ) -> bool {
        std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx).is_pending()))
            .await
    }

    fn set(key: &str) -> KvWrite {
        KvWrite::Set {
            plugin: "p".into(),
            key: key.into(),
            value: b"v".to_vec(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_is_retried_write_by_write_and_only_the_bad_write_fails() {
        let (release, released) = mpsc::channel();
        let fake = Arc::new(Fake {
            release: Mutex::new(Some(released)),
            batches: Mutex::new(Vec::new()),
        });
        let committer = Committer::start_with(fake.clone(), "fake.redb".into(), MAX_WAIT).unwrap();
        let path = Path::new("fake.redb");
        // The first write holds the thread; the next ten queue up behind it.
        let mut first = Box::pin(committer.write(set("first"), path));
        assert!(polled_once_is_pending(first.as_mut()).await);
        // The thread has taken it and waits in the fake.
        while fake.release.lock().unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let keys: Vec<String> = (0..10)
            .map(|i| {
                if i == 4 {
                    "poison".into()
                } else {
                    format!("k{i}")
                }
            })
            .collect();
        let mut queued: Vec<_> = keys
            .iter()
            .map(|key| Box::pin(committer.write(set(key), path)))
            .collect();
        // A write's first poll queues it.
        for write in &mut queued {
            assert!(polled_once_is_pending(write.as_mut()).await);
        }
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), KvWritten::Set);
        for (key, write) in keys.iter().zip(queued) {
            let outcome = write.await;
            if key == "poison" {
                assert!(
                    matches!(outcome, Err(StoreError::Database(_))),
                    "{outcome:?}"
                );
            } else {
                assert_eq!(outcome.unwrap(), KvWritten::Set, "{key}");
            }
        }
        let batches = fake.batches.lock().unwrap().clone();
        // The first alone, the ten together (failed), then each of the ten alone.
        assert_eq!(batches.len(), 12, "{batches:?}");
        assert_eq!(batches[1].len(), 10, "{batches:?}");
        assert!(batches[2..].iter().all(|b| b.len() == 1), "{batches:?}");
        assert_eq!(
            committer.counts(),
            CommitCounts {
                writes: 10,
                commits: 10
            }
        );
    }

    /// Takes `took` over every batch and records its size.
    struct Slow {
        took: Duration,
        sizes: Mutex<Vec<usize>>,
    }

    impl Batches for Slow {
        fn write_all(&self, writes: &[&KvWrite]) -> StoreResult<Vec<KvWritten>> {
            std::thread::sleep(self.took);
            self.sizes.lock().unwrap().push(writes.len());
            Ok(writes.iter().map(|_| KvWritten::Set).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_writers_share_each_commit_instead_of_taking_turns() {
        // The first batch holds whoever came first; the others queue behind it.
        // Committing those the moment it ends would leave the first group's next
        // writes to the commit after, and the two groups would take turns for good
        // (without the wait: [8, 2, 6, 2, 6, …], 19 commits).
        let slow = Arc::new(Slow {
            took: Duration::from_millis(100),
            sizes: Mutex::new(Vec::new()),
        });
        let committer = Arc::new(
            Committer::start_with(slow.clone(), "slow.redb".into(), Duration::from_secs(5))
                .unwrap(),
        );
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let committer = committer.clone();
                tokio::spawn(async move {
                    for i in 0..10 {
                        let write = set(&format!("w{w}-{i}"));
                        assert_eq!(
                            committer
                                .write(write, Path::new("slow.redb"))
                                .await
                                .unwrap(),
                            KvWritten::Set
                        );
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        let sizes = slow.sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 80, "{sizes:?}");
        // Whoever came first, then all eight together.
        assert!(sizes.len() <= 12, "{sizes:?}");
        assert!(
            sizes[1..sizes.len() - 1].iter().all(|&n| n == 8),
            "{sizes:?}"
        );
    }
}
