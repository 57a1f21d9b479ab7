//! Reading a plugin's stdout or stderr for its whole life.
//!
//! The pipe is read to its end whatever comes through it, because a pipe
//! torud stops reading fills up and blocks the plugin, and one torud closes
//! makes the plugin's next write fail (EPIPE, or death by SIGPIPE). So:
//!
//! * a line longer than [`MAX_LINE`] is kept as its first [`MAX_LINE`] bytes,
//!   marked as cut, and the rest of it is skipped as it arrives;
//! * bytes that are not UTF-8 are replaced, never an error;
//! * lines beyond the rate cap are counted and dropped without being looked
//!   at one by one, and the count is logged once the flood ebbs;
//! * memory is bounded: at most one line's worth of bytes plus one read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::{PluginLogs, classify};

/// Longest line kept; the rest of a longer line is dropped.
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// What each read asks of the pipe (a Linux pipe holds 64 KiB).
const READ_SIZE: usize = 64 * 1024;
/// Sustained lines per second accepted from one stream...
pub(crate) const RATE: f64 = 500.0;
/// ...after a burst of this many.
const BURST: f64 = 2000.0;
/// How long a flood must have ebbed before its dropped lines are counted in the log.
const QUIET: Duration = Duration::from_secs(1);

/// Appended to a line cut at [`MAX_LINE`].
pub(crate) const CUT_MARK: &str = " [cut: line longer than 16384 bytes]";

/// Reads `stream` to its end into `logs`.
pub(crate) fn spawn_reader<R>(stream: R, logs: Arc<PluginLogs>) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(read_all(stream, logs))
}

async fn read_all<R: AsyncRead + Unpin>(mut stream: R, logs: Arc<PluginLogs>) {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut lines = LineCutter::default();
    let mut bucket = Bucket::new(Instant::now());
    let mut read_errors = 0u32;
    loop {
        buf.reserve(READ_SIZE);
        // While lines are being dropped, a quiet pipe is when to say how many.
        let read = if bucket.dropped > 0 {
            match tokio::time::timeout(QUIET, stream.read_buf(&mut buf)).await {
                Ok(read) => read,
                Err(_) => {
                    report_dropped(&logs, &mut bucket);
                    continue;
                }
            }
        } else {
            stream.read_buf(&mut buf).await
        };
        match read {
            Ok(0) => {
                if let Some(line) = lines.finish(&mut buf) {
                    keep(&logs, &mut bucket, line);
                }
                report_dropped(&logs, &mut bucket);
                return;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Not seen on a pipe; retried so that the pipe stays open for the plugin.
                read_errors += 1;
                if read_errors == 1 {
                    tracing::warn!(plugin = %logs.plugin, error = %e, "cannot read the plugin's output; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        if !bucket.refill(Instant::now()) {
            // Over the cap: count the whole lines of this read and drop them unread.
            bucket.dropped += lines.skip_complete(&mut buf);
            continue;
        }
        while let Some(line) = lines.next(&mut buf) {
            if bucket.take() {
                keep(&logs, &mut bucket, line);
            } else {
                bucket.dropped += 1;
            }
        }
    }
}

fn keep(logs: &PluginLogs, bucket: &mut Bucket, line: Line) {
    report_dropped(logs, bucket);
    let text = line.text();
    let mut entry = classify(&text);
    if line.cut {
        entry.message.push_str(CUT_MARK);
    }
    logs.push_entry(entry);
}

fn report_dropped(logs: &PluginLogs, bucket: &mut Bucket) {
    if bucket.dropped > 0 {
        let dropped = std::mem::take(&mut bucket.dropped);
        logs.push(
            "warn",
            format!("[{dropped} lines dropped: more than {RATE} lines/s]"),
        );
    }
}

/// One line read, without its newline.
#[derive(Debug, PartialEq, Eq)]
struct Line {
    bytes: Bytes,
    /// The line went on past [`MAX_LINE`].
    cut: bool,
}

impl Line {
    /// The text, invalid UTF-8 replaced; a character split by the cut is dropped.
    fn text(&self) -> String {
        let mut bytes = &self.bytes[..];
        if self.cut
            && let Err(e) = std::str::from_utf8(bytes)
            && e.error_len().is_none()
        {
            bytes = &bytes[..e.valid_up_to()];
        }
        let text = String::from_utf8_lossy(bytes);
        text.strip_suffix('\r').unwrap_or(&text).to_owned()
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
struct LineCutter {
    /// Inside a line already cut: its bytes are skipped up to its newline.
    skipping: bool,
}

impl LineCutter {
    /// The next line in `buf`, taken out of it; `None` until one is complete
    /// or [`MAX_LINE`] bytes of one are there.
    fn next(&mut self, buf: &mut BytesMut) -> Option<Line> {
        loop {
            let newline = memchr::memchr(b'\n', buf);
            if self.skipping {
                match newline {
                    Some(at) => {
                        buf.advance(at + 1);
                        self.skipping = false;
                    }
                    None => {
                        buf.clear();
                        return None;
                    }
                }
                continue;
            }
            return match newline {
                Some(at) if at <= MAX_LINE => {
                    let bytes = buf.split_to(at).freeze();
                    buf.advance(1);
                    Some(Line { bytes, cut: false })
                }
                _ if buf.len() > MAX_LINE => {
                    let bytes = buf.split_to(MAX_LINE).freeze();
                    self.skipping = true;
                    Some(Line { bytes, cut: true })
                }
                _ => None,
            };
        }
    }

    /// Drops every complete line in `buf` and returns how many there were;
    /// the incomplete rest stays (or is skipped, past [`MAX_LINE`]).
    fn skip_complete(&mut self, buf: &mut BytesMut) -> u64 {
        let mut count = memchr::memchr_iter(b'\n', buf).count() as u64;
        if let Some(last) = memchr::memrchr(b'\n', buf) {
            buf.advance(last + 1);
            if std::mem::take(&mut self.skipping) {
                // The first newline ended a line already counted when it was cut.
                count -= 1;
            }
        }
        if buf.len() > MAX_LINE {
            buf.clear();
            self.skipping = true;
            count += 1;
        }
        count
    }

    /// What is left at the end of the stream: a last line without newline.
    fn finish(&mut self, buf: &mut BytesMut) -> Option<Line> {
        if let Some(line) = self.next(buf) {
            return Some(line);
        }
        if self.skipping || buf.is_empty() {
            buf.clear();
            return None;
        }
        let bytes = buf.split().freeze();
        Some(Line { bytes, cut: false })
    }
}

/// A token bucket: lines are taken while the plugin stays under the rate.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            last: now,
            dropped: 0,
        }
    }

    /// Adds what accrued since the last call; false when not one line may pass.
    fn refill(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * RATE).min(BURST);
        self.last = now;
        self.tokens >= 1.0
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(cutter: &mut LineCutter, buf: &mut BytesMut) -> Vec<(String, bool)> {
        std::iter::from_fn(|| cutter.next(buf))
            .map(|l| (l.text(), l.cut))
            .collect()
    }

    #[test]
    fn lines_are_split_at_newlines_and_partial_ones_wait() {
        let mut cutter = LineCutter::default();
        let mut buf = BytesMut::from(&b"one\r\ntwo\nthr"[..]);
        assert_eq!(
            lines(&mut cutter, &mut buf),
            [("one".to_owned(), false), ("two".to_owned(), false)]
        );
        buf.extend_from_slice(b"ee\n");
        assert_eq!(lines(&mut cutter, &mut buf), [("three".to_owned(), false)]);
        buf.extend_from_slice(b"no newline");
        assert_eq!(
            cutter.finish(&mut buf).map(|l| l.text()),
            Some("no newline".to_owned())
        );
    }

    #[test]
    fn a_long_line_is_cut_once_and_the_next_line_is_whole() {
        let mut cutter = LineCutter::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        // 100 KiB of one line arriving in pieces, then a short line.
        for _ in 0..25 {
            buf.extend_from_slice(&[b'x'; 4096]);
            got.extend(lines(&mut cutter, &mut buf));
            assert!(
                buf.len() <= MAX_LINE + 4096,
                "the buffer grew to {}",
                buf.len()
            );
        }
        buf.extend_from_slice(b"xxx\nafter\n");
        got.extend(lines(&mut cutter, &mut buf));
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(|l| l.0.len()).collect::<Vec<_>>()
        );
        assert_eq!(got[0], ("x".repeat(MAX_LINE), true));
        assert_eq!(got[1], ("after".to_owned(), false));
    }

    #[test]
    fn a_line_of_exactly_the_cap_is_whole() {
        let mut cutter = LineCutter::default();
        let mut text = "y".repeat(MAX_LINE);
        text.push('\n');
        let mut buf = BytesMut::from(text.as_bytes());
        assert_eq!(
            lines(&mut cutter, &mut buf),
            [("y".repeat(MAX_LINE), false)]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_and_a_character_split_by_the_cut_dropped() {
        let mut cutter = LineCutter::default();
        let mut buf = BytesMut::from(&b"bad \xff byte\n"[..]);
        assert_eq!(
            lines(&mut cutter, &mut buf),
            [("bad \u{fffd} byte".to_owned(), false)]
        );
        // "é" is two bytes: the cut falls between them.
        let mut long = vec![b'a'; MAX_LINE - 1];
        long.extend_from_slice("é and more\n".as_bytes());
        let mut buf = BytesMut::from(&long[..]);
        let got = lines(&mut cutter, &mut buf);
        assert_eq!(got, [("a".repeat(MAX_LINE - 1), true)]);
    }

    #[test]
    fn skipping_counts_whole_lines_only() {
        let mut cutter = LineCutter::default();
        let mut buf = BytesMut::from(&b"a\nb\nc\npartial"[..]);
        assert_eq!(cutter.skip_complete(&mut buf), 3);
        assert_eq!(&buf[..], b"partial");
        buf.extend_from_slice(b" end\nnext\n");
        assert_eq!(lines(&mut cutter, &mut buf).len(), 2);

        // A cut line's own newline is not a second line.
        let mut buf = BytesMut::from(&vec![b'z'; MAX_LINE + 5][..]);
        assert!(cutter.next(&mut buf).is_some_and(|l| l.cut));
        buf.extend_from_slice(b"zz\nline\n");
        assert_eq!(cutter.skip_complete(&mut buf), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(start);
        assert!(bucket.refill(start));
        let passed = (0..5000).filter(|_| bucket.take()).count();
        assert_eq!(passed, BURST as usize);
        assert!(!bucket.refill(start));
        assert!(bucket.refill(start + Duration::from_secs(1)));
        let passed = (0..5000).filter(|_| bucket.take()).count();
        assert_eq!(passed, RATE as usize);
    }

    #[tokio::test]
    async fn a_long_line_is_kept_cut_and_reading_goes_on() {
        let logs = PluginLogs::new("p");
        let mut input = "x".repeat(10 * MAX_LINE);
        input.push_str("\nafter\nlast without newline");
        spawn_reader(std::io::Cursor::new(input.into_bytes()), logs.clone())
            .await
            .unwrap();
        let all = logs.messages();
        assert_eq!(
            all.len(),
            3,
            "{:?}",
            all.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(all[0].ends_with(CUT_MARK));
        assert_eq!(all[0].len(), MAX_LINE + CUT_MARK.len());
        assert_eq!(all[1..], ["after", "last without newline"]);
    }

    #[tokio::test]
    async fn an_instant_flood_is_capped_and_counted() {
        let logs = PluginLogs::new("p");
        let input: String = (0..5000).map(|i| format!("flood {i}\n")).collect();
        spawn_reader(std::io::Cursor::new(input.into_bytes()), logs.clone())
            .await
            .unwrap();
        let all = logs.messages();
        // The burst allowance passes 2000 lines; the rest of an instant
        // flood is dropped, and counted when the stream ends.
        assert!(
            !all.iter().any(|m| m == "flood 4999"),
            "a flood of 5000 lines was not capped"
        );
        let last = all.last().cloned().unwrap_or_default();
        assert!(
            last.ends_with(" lines dropped: more than 500 lines/s]"),
            "{last}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_lines_are_counted_once_the_flood_ebbs() {
        let logs = PluginLogs::new("p");
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let task = spawn_reader(reader, logs.clone());
        let flood: String = (0..3000).map(|i| format!("flood {i}\n")).collect();
        tokio::io::AsyncWriteExt::write_all(&mut writer, flood.as_bytes())
            .await
            .unwrap();
        // Nothing more is written: after a quiet second the count is logged.
        tokio::time::sleep(QUIET * 2).await;
        let all = logs.messages();
        assert!(
            all.last().is_some_and(|m| m.contains(" lines dropped")),
            "{:?}",
            all.last()
        );
        drop(writer);
        task.await.unwrap();
    }
}
