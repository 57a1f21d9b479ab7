//! `toructl plugins logs ID -f`: polls the logs endpoint and prints only
//! the lines that are new since the last poll.
//!
//! torud keeps the last 1000 lines of each plugin in a ring and serves them
//! newest last; a poll cannot ask "after line N" (a line has no sequence
//! number, and `total` stops growing once the ring is full). So each poll
//! fetches the newest lines and lines them up against the lines seen last
//! time: the new lines are those after the place where the previous tail
//! ends. Polls ask for a small page; when the previous tail is not in it
//! (more lines came than the page holds), the poll is repeated with the
//! ring's full size, and only when even that does not contain the previous
//! tail (over 1000 lines in one interval, or a new ring after a reload) are
//! lines lost, which is said on stderr.

use std::time::Duration;

use serde_json::Value;

use super::client::Client;
use super::error::CliError;
use super::output::Out;

/// How often to poll.
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);
/// Lines asked per poll in the common case, and the tail kept to line up.
const SMALL_PAGE: usize = 100;
/// The largest page the API gives (the ring's size).
const FULL_PAGE: usize = 1000;

/// What `follow` needs to know about the command.
#[derive(Debug)]
pub(crate) struct Follow<'a> {
    /// Plugin id (already checked).
    pub id: &'a str,
    /// Lines to show before following.
    pub lines: usize,
    /// Only lines at this level or more severe.
    pub level: Option<&'a str>,
}

impl Follow<'_> {
    /// Prints the last `lines` lines, then new ones as they come, until
    /// Ctrl-C (exit 0) or an error.
    pub(crate) async fn run(
        &self,
        client: &Client,
        out: &Out,
        print: impl Fn(&Out, &Value) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        let first = self.page(client, self.lines.max(SMALL_PAGE)).await?;
        let start = first.len().saturating_sub(self.lines);
        for line in &first[start..] {
            print(out, line)?;
        }
        let mut seen = tail(first);
        let stop = tokio::signal::ctrl_c();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                () = tokio::time::sleep(INTERVAL) => {}
            }
            let mut page = self.page(client, SMALL_PAGE).await?;
            let mut from = new_from(&seen, &page);
            if from.is_none() {
                page = self.page(client, FULL_PAGE).await?;
                from = new_from(&seen, &page);
                if from.is_none() {
                    super::warn(&format!("some lines of {} may have been missed", self.id));
                }
            }
            for line in &page[from.unwrap_or(0)..] {
                print(out, line)?;
            }
            seen = tail(page);
        }
    }

    /// The newest `size` lines, oldest first.
    async fn page(&self, client: &Client, size: usize) -> Result<Vec<Value>, CliError> {
        let mut path = format!("/api/plugins/{}/logs?page_size={size}", self.id);
        if let Some(level) = self.level {
            path.push_str(&format!("&level={level}"));
        }
        let mut page = client.get(&path).await?;
        match page.get_mut("logs").map(Value::take) {
            Some(Value::Array(lines)) => Ok(lines),
            _ => Err(CliError::Failed(
                "torud's answer has no \"logs\" list".into(),
            )),
        }
    }
}

/// The last lines of `page`, enough to line up the next poll.
fn tail(mut page: Vec<Value>) -> Vec<Value> {
    let drop = page.len().saturating_sub(SMALL_PAGE);
    page.drain(..drop);
    page
}

/// Where the new lines of `page` start, given the lines `seen` at the end
/// of the previous poll; `None` when `page` does not contain the end of
/// `seen` (lines were lost in between).
///
/// `page` holds the same lines as before with some dropped at the front
/// and some added at the end. The answer is the largest `e` such that
/// `page[..e]` ends with `seen` (or, when `page` starts inside `seen`, is
/// a suffix of it): the fewest new lines consistent with both polls.
pub(crate) fn new_from<T: PartialEq>(seen: &[T], page: &[T]) -> Option<usize> {
    if seen.is_empty() {
        return Some(0);
    }
    (1..=page.len()).rev().find(|&e| {
        let overlap = seen.len().min(e);
        page[e - overlap..e] == seen[seen.len() - overlap..]
    })
}

#[cfg(test)]
mod tests {
    use super::new_from;

    #[test]
    fn nothing_new() {
        assert_eq!(new_from(&[1, 2, 3], &[1, 2, 3]), Some(3));
        assert_eq!(new_from::<u8>(&[], &[]), Some(0));
    }

    #[test]
    fn lines_added() {
        assert_eq!(new_from(&[1, 2, 3], &[1, 2, 3, 4, 5]), Some(3));
        assert_eq!(new_from::<u8>(&[], &[1, 2]), Some(0));
    }

    #[test]
    fn lines_added_and_dropped_from_a_small_page() {
        // A page of 3: the window slid by two.
        assert_eq!(new_from(&[1, 2, 3], &[3, 4, 5]), Some(1));
        assert_eq!(new_from(&[1, 2, 3], &[2, 3, 4]), Some(2));
    }

    #[test]
    fn a_larger_page_starts_before_the_tail() {
        assert_eq!(new_from(&[4, 5, 6], &[1, 2, 3, 4, 5, 6, 7]), Some(6));
    }

    #[test]
    fn repeated_lines_count_as_few_new_ones_as_possible() {
        assert_eq!(new_from(&[1, 2, 1, 2], &[1, 2, 1, 2]), Some(4));
        assert_eq!(new_from(&[7, 7], &[7, 7, 7]), Some(3));
    }

    #[test]
    fn a_gap_is_reported() {
        assert_eq!(new_from(&[1, 2, 3], &[8, 9]), None);
        assert_eq!(new_from(&[1, 2, 3], &[]), None);
    }
}
