//! A plugin's life as a plain state machine, apart from its I/O: where its
//! supervisor goes on each command, when a plugin that died is started
//! again, and when it is given up on. The supervisor (`supervisor.rs`) feeds
//! it events with their time and does what it answers; the tests here drive
//! it with tokio's paused clock.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::command::Command;
use crate::config::RestartPolicy;

/// Where a supervisor is between runs of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Start the process (again).
    Run,
    /// Wait this long, then [`Phase::Run`].
    Backoff(Duration),
    /// Given up on, for this reason, until enabled again (persisted).
    Failed(String),
    /// Stopped by the administrator (persisted).
    Disabled,
    /// torud is stopping: the supervisor ends.
    Exit,
}

/// What a move records, besides the phase it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing.
    None,
    /// Persist `enabled`, clear `failed` and the failure history; `cleared` when it was failed.
    Enabled {
        /// The plugin was `failed`.
        cleared: bool,
    },
    /// Persist `disabled`.
    Disabled,
    /// Count a restart asked for by the administrator.
    Restarted,
}

/// One move: where to go, and what to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The next phase.
    pub(crate) next: Phase,
    /// What to record.
    pub(crate) effect: Effect,
}

impl Step {
    fn to(next: Phase, effect: Effect) -> Self {
        Self { next, effect }
    }
}

/// Where `command` leads from `phase`, the process not running (`None`: every sender of
/// commands is gone, which means stop). In [`Phase::Backoff`], the wait ending is
/// [`Phase::Run`] without a command.
pub(crate) fn while_down(phase: &Phase, command: Option<Command>) -> Step {
    use Command::{Disable, Enable, Restart, Stop};
    match (phase, command) {
        (_, Some(Stop) | None) => Step::to(Phase::Exit, Effect::None),
        (Phase::Disabled, Some(Disable)) => Step::to(Phase::Disabled, Effect::None),
        (_, Some(Disable)) => Step::to(Phase::Disabled, Effect::Disabled),
        (Phase::Disabled, Some(Enable | Restart)) => {
            Step::to(Phase::Run, Effect::Enabled { cleared: false })
        }
        (Phase::Failed(_), Some(Enable | Restart)) => {
            Step::to(Phase::Run, Effect::Enabled { cleared: true })
        }
        // In backoff (or about to run): start now, as enabled as before.
        (_, Some(Enable | Restart)) => Step::to(Phase::Run, Effect::None),
    }
}

/// What `command` does to a running process: `None` to leave it running, else it is
/// stopped and the step taken.
pub(crate) fn while_running(command: Option<Command>) -> Option<Step> {
    match command {
        Some(Command::Enable) => None,
        Some(Command::Restart) => Some(Step::to(Phase::Run, Effect::Restarted)),
        Some(Command::Disable) => Some(Step::to(Phase::Disabled, Effect::Disabled)),
        Some(Command::Stop) | None => Some(Step::to(Phase::Exit, Effect::None)),
    }
}

/// The phase a supervisor starts in, from the persisted record.
pub(crate) fn first(enabled: bool, failed: Option<String>) -> Phase {
    match (enabled, failed) {
        (false, _) => Phase::Disabled,
        (true, Some(reason)) => Phase::Failed(reason),
        (true, None) => Phase::Run,
    }
}

/// What follows a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AfterCrash {
    /// Start it again after this wait.
    Restart(Duration),
    /// It failed too often: this says how.
    GiveUp(String),
}

/// A plugin's recent crashes: the failure window and the backoff level.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    failures: VecDeque<Instant>,
    level: u32,
}

impl Restarts {
    /// The plugin died at `now` after running `uptime`, for `reason`.
    ///
    /// A plugin that ran `stable_after` or longer starts over: no backoff, no history.
    /// `max_failures` crashes within `failure_window` give it up; otherwise the wait is
    /// `backoff_initial`, doubled for each crash since it was last stable, at most
    /// `backoff_max`.
    pub(crate) fn crashed(
        &mut self,
        policy: &RestartPolicy,
        now: Instant,
        uptime: Duration,
        reason: &str,
    ) -> AfterCrash {
        if uptime >= policy.stable_after {
            self.forget();
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > policy.failure_window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= policy.max_failures as usize {
            return AfterCrash::GiveUp(format!(
                "{} failures within {}: last: {reason}",
                self.failures.len(),
                humantime::format_duration(policy.failure_window)
            ));
        }
        let delay = policy
            .backoff_initial
            .saturating_mul(1 << self.level.min(20))
            .min(policy.backoff_max);
        self.level += 1;
        AfterCrash::Restart(delay)
    }

    /// The administrator enabled it or cleared `failed`: the history is gone.
    pub(crate) fn forget(&mut self) {
        self.failures.clear();
        self.level = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::{Disable, Enable, Restart, Stop};

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(2),
            stable_after: Duration::from_secs(60),
            max_failures: 5,
            failure_window: Duration::from_secs(120),
        }
    }

    fn restart(after: Duration) -> AfterCrash {
        AfterCrash::Restart(after)
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_its_ceiling() {
        let mut restarts = Restarts::default();
        let policy = RestartPolicy {
            max_failures: 100,
            ..policy()
        };
        let mut waits = Vec::new();
        for _ in 0..6 {
            match restarts.crashed(&policy, Instant::now(), Duration::ZERO, "x") {
                AfterCrash::Restart(wait) => {
                    waits.push(wait.as_millis());
                    tokio::time::advance(wait).await;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [250, 500, 1000, 2000, 2000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn five_crashes_in_the_window_give_up_and_say_why() {
        let mut restarts = Restarts::default();
        for _ in 0..4 {
            assert!(matches!(
                restarts.crashed(&policy(), Instant::now(), Duration::ZERO, "exit 1"),
                AfterCrash::Restart(_)
            ));
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert_eq!(
            restarts.crashed(&policy(), Instant::now(), Duration::ZERO, "exit 1"),
            AfterCrash::GiveUp("5 failures within 2m: last: exit 1".to_owned())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn crashes_older_than_the_window_do_not_count() {
        let mut restarts = Restarts::default();
        for _ in 0..20 {
            let after = restarts.crashed(&policy(), Instant::now(), Duration::ZERO, "x");
            assert!(matches!(after, AfterCrash::Restart(_)), "{after:?}");
            // 4 crashes per window of 120 s: never 5 within one.
            tokio::time::advance(Duration::from_secs(31)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stable_run_starts_the_backoff_over() {
        let mut restarts = Restarts::default();
        let now = Instant::now();
        assert_eq!(
            restarts.crashed(&policy(), now, Duration::ZERO, "x"),
            restart(Duration::from_millis(250))
        );
        assert_eq!(
            restarts.crashed(&policy(), now, Duration::ZERO, "x"),
            restart(Duration::from_millis(500))
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            restarts.crashed(&policy(), Instant::now(), Duration::from_secs(61), "x"),
            restart(Duration::from_millis(250))
        );
        restarts.forget();
        assert_eq!(
            restarts.crashed(&policy(), Instant::now(), Duration::ZERO, "x"),
            restart(Duration::from_millis(250))
        );
    }

    #[test]
    fn commands_while_down() {
        let failed = Phase::Failed("boom".into());
        let backoff = Phase::Backoff(Duration::from_secs(1));
        let table = [
            (
                &Phase::Disabled,
                Enable,
                Phase::Run,
                Effect::Enabled { cleared: false },
            ),
            (
                &Phase::Disabled,
                Restart,
                Phase::Run,
                Effect::Enabled { cleared: false },
            ),
            (&Phase::Disabled, Disable, Phase::Disabled, Effect::None),
            (
                &failed,
                Enable,
                Phase::Run,
                Effect::Enabled { cleared: true },
            ),
            (
                &failed,
                Restart,
                Phase::Run,
                Effect::Enabled { cleared: true },
            ),
            (&failed, Disable, Phase::Disabled, Effect::Disabled),
            (&backoff, Enable, Phase::Run, Effect::None),
            (&backoff, Restart, Phase::Run, Effect::None),
            (&backoff, Disable, Phase::Disabled, Effect::Disabled),
        ];
        for (phase, command, next, effect) in table {
            assert_eq!(
                while_down(phase, Some(command)),
                Step { next, effect },
                "{phase:?} {command:?}"
            );
        }
        for phase in [&Phase::Disabled, &failed, &backoff] {
            assert_eq!(while_down(phase, Some(Stop)).next, Phase::Exit);
            assert_eq!(while_down(phase, None).next, Phase::Exit);
        }
    }

    #[test]
    fn commands_while_running() {
        assert_eq!(while_running(Some(Enable)), None);
        assert_eq!(
            while_running(Some(Restart)),
            Some(Step::to(Phase::Run, Effect::Restarted))
        );
        assert_eq!(
            while_running(Some(Disable)),
            Some(Step::to(Phase::Disabled, Effect::Disabled))
        );
        assert_eq!(
            while_running(Some(Stop)),
            Some(Step::to(Phase::Exit, Effect::None))
        );
        assert_eq!(
            while_running(None),
            Some(Step::to(Phase::Exit, Effect::None))
        );
    }

    #[test]
    fn the_persisted_record_gives_the_first_phase() {
        assert_eq!(first(false, Some("x".into())), Phase::Disabled);
        assert_eq!(first(true, Some("x".into())), Phase::Failed("x".into()));
        assert_eq!(first(true, None), Phase::Run);
    }
}
