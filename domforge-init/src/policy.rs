//! What to do when a guest stops: the manifest's `on_crash`, and libxl's defaults for the other
//! shutdown reasons (`on_poweroff = "destroy"`, `on_reboot = "restart"`, `xl.cfg(5)`).

use firmware_config::blob::BootOnCrash;
use std::time::{Duration, Instant};

/// `SHUTDOWN_*` codes (`xen/include/public/sched.h`), as `XEN_DOMINF_shutdown` reports them.
pub mod reason {
    pub const POWEROFF: u32 = 0;
    pub const REBOOT: u32 = 1;
    pub const SUSPEND: u32 = 2;
    pub const CRASH: u32 = 3;
    pub const WATCHDOG: u32 = 4;
    pub const SOFT_RESET: u32 = 5;
}

/// Name of a shutdown code, for the log.
pub fn reason_name(code: u32) -> &'static str {
    match code {
        reason::POWEROFF => "poweroff",
        reason::REBOOT => "reboot",
        reason::SUSPEND => "suspend",
        reason::CRASH => "crash",
        reason::WATCHDOG => "watchdog",
        reason::SOFT_RESET => "soft_reset",
        _ => "unknown",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave it alone (suspend: nobody here resumes it, but its memory is kept for inspection).
    Keep,
    Destroy,
    /// Destroy and build again from the same manifest entry.
    Restart,
    /// Reboot the whole machine (`on_crash = "reboot-platform"`).
    RebootPlatform,
}

/// The action for a domain that shut down with `code` (`None`: it vanished, e.g. destroyed by someone
/// else — treated as a crash).
pub fn action(code: Option<u32>, on_crash: BootOnCrash) -> Action {
    let crash = || match on_crash {
        BootOnCrash::Destroy => Action::Destroy,
        BootOnCrash::Restart => Action::Restart,
        BootOnCrash::RebootPlatform => Action::RebootPlatform,
    };
    match code {
        Some(reason::POWEROFF) => Action::Destroy,
        Some(reason::REBOOT | reason::SOFT_RESET) => Action::Restart,
        Some(reason::SUSPEND) => Action::Keep,
        Some(reason::CRASH | reason::WATCHDOG) | None => crash(),
        Some(_) => crash(),
    }
}

/// Stops a crash loop: at most `limit` restarts within `window`.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    limit: usize,
    window: Duration,
    recent: Vec<Instant>,
}

impl RestartBudget {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            recent: Vec::new(),
        }
    }

    /// "5 times within 60 s", for messages.
    pub fn describe(&self) -> String {
        // Milliseconds as integers: formatting an f64 would link core's float printer (~15 KB)
        // into a binary that prints no other float.
        let ms = self.window.as_millis();
        let window = match ms % 1000 {
            0 => format!("{}", ms / 1000),
            frac => format!(
                "{}.{}",
                ms / 1000,
                format!("{frac:03}").trim_end_matches('0')
            ),
        };
        format!("{} times within {window} s", self.limit)
    }

    /// Records a restart at `now` if the budget allows it.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.recent
            .retain(|t| now.saturating_duration_since(*t) < self.window);
        if self.recent.len() >= self.limit {
            return false;
        }
        self.recent.push(now);
        true
    }
}

impl Default for RestartBudget {
    /// 5 restarts a minute.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_window_is_described_in_seconds_without_floats() {
        let d = |ms| RestartBudget::new(5, Duration::from_millis(ms)).describe();
        assert_eq!(d(60_000), "5 times within 60 s");
        assert_eq!(d(1_500), "5 times within 1.5 s");
        assert_eq!(d(250), "5 times within 0.25 s");
        assert_eq!(d(1_005), "5 times within 1.005 s");
    }

    #[test]
    fn crash_follows_on_crash_and_other_reasons_follow_libxl_defaults() {
        assert_eq!(action(Some(3), BootOnCrash::Restart), Action::Restart);
        assert_eq!(action(Some(3), BootOnCrash::Destroy), Action::Destroy);
        assert_eq!(
            action(Some(4), BootOnCrash::RebootPlatform),
            Action::RebootPlatform
        );
        assert_eq!(action(None, BootOnCrash::Restart), Action::Restart);
        assert_eq!(action(Some(0), BootOnCrash::Restart), Action::Destroy);
        assert_eq!(action(Some(1), BootOnCrash::Destroy), Action::Restart);
        assert_eq!(action(Some(2), BootOnCrash::Restart), Action::Keep);
        assert_eq!(reason_name(3), "crash");
    }

    #[test]
    fn restart_budget_refuses_a_crash_loop_and_recovers() {
        let mut b = RestartBudget::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_secs(1)));
        assert!(!b.try_take(t0 + Duration::from_secs(2)));
        assert!(b.try_take(t0 + Duration::from_secs(12)));
    }
}
