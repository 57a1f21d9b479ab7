//! What verifying the store at start costs: fills a state directory with
//! `MIB` MiB of plugin values through torud's own store, then times opening
//! it with every page verified (`verify_on_start = "always"`) and without
//! (`"after-crash"` after a clean stop).
//!
//! `storecheck [MIB] [--cold]` (default 100 MiB of values); prints the median
//! of three opens each way and the cost per MiB of file. The file stays in
//! the page cache between opens (warm figures) unless `--cold`, which drops
//! the kernel's caches before each open (root only).

use std::time::{Duration, Instant};

use toru_service::config::VerifyOnStart;
use toru_service::store::Store;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cold = args.iter().any(|a| a == "--cold");
    let mib: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    {
        let store = Store::open(&state)?;
        let value = vec![0x5a_u8; 64 * 1024];
        for i in 0..mib * 16 {
            store.kv_set(&format!("plugin-{}", i % 8), &format!("key-{i:06}"), &value)?;
        }
    }
    let size = std::fs::metadata(state.join("toru.redb"))?.len();
    let size_mib = size as f64 / (1024.0 * 1024.0);
    println!(
        "store: {size_mib:.1} MiB ({} values of 64 KiB), {} page cache",
        mib * 16,
        if cold { "cold" } else { "warm" }
    );
    let time = |verify: VerifyOnStart| -> Result<Duration, Box<dyn std::error::Error>> {
        if cold {
            std::fs::write("/proc/sys/vm/drop_caches", "3")?;
        }
        let started = Instant::now();
        let store = Store::open_verifying(&state, verify)?;
        let elapsed = started.elapsed();
        drop(store);
        Ok(elapsed)
    };
    let mut verified = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..3 {
        verified.push(time(VerifyOnStart::Always)?);
        plain.push(time(VerifyOnStart::AfterCrash)?);
    }
    verified.sort();
    plain.sort();
    let (v, p) = (verified[1], plain[1]);
    println!("open, every page verified: {v:?} (median of 3)");
    println!("open, not verified:        {p:?} (median of 3)");
    println!(
        "verification: {:.2} ms per MiB",
        (v.saturating_sub(p)).as_secs_f64() * 1000.0 / size_mib
    );
    Ok(())
}
