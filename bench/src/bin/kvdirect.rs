//! The baseline for plugin KV: redb used directly, in-process, the way
//! torud's store uses it (`toru-service/src/store.rs`): a `(&str, &str) ->
//! &[u8]` table, one write transaction per set with redb's default
//! durability (`Immediate`: fsync on commit) and quick repair on, one read
//! transaction per get, a 32 MiB cache.
//!
//! `kvdirect DIR THREADS SETS GETS [SIZE]`: each of THREADS threads (one
//! per "plugin", under its own first key component) does SETS sequential
//! sets of SIZE-byte values (default 100) to keys `k0` .. `k{SETS-1}`, then
//! GETS sequential gets of those keys round and round, as `kvbench` does.
//! Prints `{"threads", "sets", "gets", "set_ops_per_s", "get_ops_per_s"}`
//! counted over all threads and the wall time of the slowest.

use std::error::Error;
use std::path::Path;
use std::time::Instant;

use redb::{Database, ReadableDatabase, TableDefinition};

type BoxError = Box<dyn Error + Send + Sync>;

const KV: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("kv");
/// torud's `CACHE_BYTES`.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

fn set_all(db: &Database, plugin: &str, n: u64, value: &[u8]) -> Result<(), BoxError> {
    for i in 0..n {
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        txn.open_table(KV)?
            .insert((plugin, format!("k{i}").as_str()), value)?;
        txn.commit()?;
    }
    Ok(())
}

fn get_all(db: &Database, plugin: &str, n: u64, keys: u64) -> Result<(), BoxError> {
    for i in 0..n {
        let key = format!("k{}", i % keys.max(1));
        let txn = db.begin_read()?;
        let table = txn.open_table(KV)?;
        if table.get((plugin, key.as_str()))?.is_none() {
            return Err(format!("{plugin}/{key} missing").into());
        }
    }
    Ok(())
}

/// Runs `work` on `threads` threads at once; the wall time in seconds.
fn timed(
    threads: u64,
    work: impl Fn(&str) -> Result<(), BoxError> + Sync,
) -> Result<f64, BoxError> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || work(&format!("plugin-{t}"))))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| BoxError::from("a thread panicked"))?)
    })?;
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, threads, sets, gets, size) = match args.as_slice() {
        [_, dir, threads, sets, gets] => (dir, threads, sets, gets, 100),
        [_, dir, threads, sets, gets, size] => (dir, threads, sets, gets, size.parse()?),
        _ => return Err("usage: kvdirect DIR THREADS SETS GETS [SIZE]".into()),
    };
    let (threads, sets, gets): (u64, u64, u64) = (threads.parse()?, sets.parse()?, gets.parse()?);
    std::fs::create_dir_all(dir)?;
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(Path::new(dir).join("direct.redb"))?;
    {
        // Like torud's store: the table exists before the first set.
        let txn = db.begin_write()?;
        txn.open_table(KV)?;
        txn.commit()?;
    }
    let value = vec![b'v'; size];
    let set_s = timed(threads, |plugin| set_all(&db, plugin, sets, &value))?;
    let get_s = timed(threads, |plugin| get_all(&db, plugin, gets, sets))?;
    let per_s = |n: u64, seconds: f64| (n * threads) as f64 / seconds;
    println!(
        "{}",
        serde_json::json!({
            "threads": threads,
            "sets": sets,
            "gets": gets,
            "set_ops_per_s": per_s(sets, set_s),
            "get_ops_per_s": per_s(gets, get_s),
        })
    );
    Ok(())
}
