//! Giving freed memory back to the system. A load burst (many connections with large
//! bodies) leaves glibc's malloc arenas holding tens of MiB of freed but fragmented
//! memory, which it keeps (it returns only a free top of each heap): torud went from
//! 9 MiB idle to 60-70 MiB after the gateway loads of `bench/run.sh`, and stayed
//! there. `malloc_trim(0)` returns the free pages anywhere in the heaps (since glibc
//! 2.8), which brought the same process back to 10.7 MiB. It is cheap (a walk of the
//! free lists), so torud calls it every [`TRIM_EVERY`], off the serving threads.

use std::time::Duration;

/// How often freed memory is handed back.
pub(crate) const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Hands the free pages of every malloc arena back to the kernel; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn trim() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim takes no pointer and only walks and madvises glibc's own
    // free lists, under the arenas' locks; it is safe to call from any thread at any
    // time.
    let released = unsafe { libc::malloc_trim(0) };
    released == 1
}

/// Other C libraries give memory back by themselves, or cannot be asked.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        fn resident_kib() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                .unwrap()
        }
        // 64 MiB in 64 KiB blocks, interleaved with small ones that stay: the
        // fragmentation a burst of large bodies leaves behind.
        let mut kept = Vec::new();
        let mut blocks = Vec::new();
        for i in 0..1024u32 {
            blocks.push(vec![i as u8; 64 * 1024]);
            kept.push(vec![1u8; 64]);
        }
        let full = resident_kib();
        drop(blocks);
        trim();
        let trimmed = resident_kib();
        assert!(
            trimmed + 32 * 1024 < full,
            "resident {full} KiB with the blocks, {trimmed} KiB after trimming"
        );
        drop(kept);
    }
}
