//! Outline's `users.invite` allows 50 requests an hour, each with up to 20 people (docs/src/upstream/outline.md
//! §6.8). Outline counts in fixed windows that start at a request the bridge cannot see, so the bridge keeps
//! to the stricter rule: at most 50 requests in any hour. Then no fixed window can ever hold more. A GCRA
//! limiter (governor's) cannot say "any hour": with a burst of 50 it lets close to 100 through in one.
//! Pure: the caller passes the clock in.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `UserValidation.maxInvitesPerRequest` in Outline's `shared/validations.ts`.
pub const INVITES_PER_REQUEST: usize = 20;
/// `RateLimiterStrategy.FiftyPerHour` on `users.invite`.
pub const REQUESTS_PER_WINDOW: usize = 50;
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Wall-clock time in milliseconds since 1970: a window kept in `STATE_DIR` must mean the same to the next
/// process, and to a CLI run beside `serve`, which a monotonic clock cannot.
pub type UnixMs = u64;

pub fn unix_ms_now() -> UnixMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as UnixMs)
        .unwrap_or_default()
}

/// How many in how long: `REQUESTS_PER_WINDOW` invite requests, or `MAX_SUSPENSIONS` suspensions, an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowRule {
    pub limit: usize,
    pub window: Duration,
}

impl WindowRule {
    fn window_ms(&self) -> UnixMs {
        self.window.as_millis() as UnixMs
    }
}

/// What was spent in the last window, oldest first: the part of a window that is kept, in memory or in
/// `STATE_DIR`. The rule is the caller's, from the settings of the process that reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowLog {
    #[serde(default)]
    sent: VecDeque<UnixMs>,
    /// After a 429: no request before this, whatever the log says (a restart without `STATE_DIR` forgot
    /// earlier requests).
    #[serde(default)]
    blocked_until: Option<UnixMs>,
}

impl WindowLog {
    fn forget_old(&mut self, rule: WindowRule, now: UnixMs) {
        let window = rule.window_ms();
        // An entry from further ahead than one window means the clock was set back: it no longer counts.
        self.sent
            .retain(|t| now.saturating_sub(*t) < window && t.saturating_sub(now) <= window);
        if self.blocked_until.is_some_and(|b| b <= now) {
            self.blocked_until = None;
        }
    }

    /// What may be spent now.
    pub fn available(&mut self, rule: WindowRule, now: UnixMs) -> usize {
        self.forget_old(rule, now);
        if self.blocked_until.is_some() {
            return 0;
        }
        rule.limit.saturating_sub(self.sent.len())
    }

    /// Spends one if one is left; the check and the spending are one step, so two processes sharing the log
    /// under its lock never both take the last one.
    pub fn take(&mut self, rule: WindowRule, now: UnixMs) -> bool {
        if self.available(rule, now) == 0 {
            return false;
        }
        self.sent.push_back(now);
        true
    }

    /// Returns what `take` spent at `at`, for a call that was refused and so did nothing.
    pub fn give_back(&mut self, at: UnixMs) {
        if let Some(i) = self.sent.iter().rposition(|t| *t == at) {
            self.sent.remove(i);
        }
    }

    /// Outline answered 429: nothing more until `wait` has passed (a whole window when it did not say).
    pub fn block(&mut self, rule: WindowRule, now: UnixMs, wait: Option<Duration>) {
        let wait = wait.unwrap_or(rule.window).as_millis() as UnixMs;
        self.blocked_until = Some(now.saturating_add(wait));
    }

    /// When the next one may be spent; `None` when one may be now.
    pub fn next_free(&mut self, rule: WindowRule, now: UnixMs) -> Option<UnixMs> {
        if self.available(rule, now) > 0 {
            return None;
        }
        let oldest_expires = if self.sent.len() >= rule.limit {
            self.sent.front().map(|t| t + rule.window_ms())
        } else {
            None
        };
        match (self.blocked_until, oldest_expires) {
            (Some(b), Some(o)) => Some(b.max(o)),
            (b, o) => b.or(o),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: UnixMs = 1000;

    #[test]
    fn a_429_blocks_until_its_wait_has_passed() {
        let t0: UnixMs = 1_800_000_000_000;
        let rule = WindowRule {
            limit: 2,
            window: Duration::from_secs(60),
        };
        let mut w = WindowLog::default();
        assert!(w.take(rule, t0));
        w.block(rule, t0, Some(Duration::from_secs(5)));
        assert_eq!(w.available(rule, t0 + 4 * S), 0);
        assert_eq!(w.next_free(rule, t0), Some(t0 + 5 * S));
        assert_eq!(w.available(rule, t0 + 5 * S), 1);
        w.block(rule, t0, None);
        assert_eq!(w.next_free(rule, t0), Some(t0 + 60 * S));
    }

    #[test]
    fn a_refused_call_gives_its_share_back_and_a_clock_set_back_frees_the_window() {
        let t0: UnixMs = 1_800_000_000_000;
        let rule = WindowRule {
            limit: 1,
            window: Duration::from_secs(60),
        };
        let mut w = WindowLog::default();
        assert!(w.take(rule, t0));
        assert!(!w.take(rule, t0 + S), "spent");
        w.give_back(t0);
        assert!(w.take(rule, t0 + S), "given back");
        // The clock went back two hours: the entry "from the future" no longer counts.
        assert_eq!(w.available(rule, t0 - 7200 * S), 1);
    }

    proptest! {
        /// Whenever requests are sent as soon as the window allows, no span of one window ever holds more
        /// than the limit, and `next_free` names a later time whenever none may go now.
        #[test]
        fn no_window_ever_holds_more_than_the_limit(
            gaps in prop::collection::vec(0u64..400, 1..300),
            limit in 1usize..8,
        ) {
            let rule = WindowRule { limit, window: Duration::from_secs(100) };
            let t0: UnixMs = 1_800_000_000_000;
            let mut w = WindowLog::default();
            let mut now = t0;
            let mut sent: Vec<UnixMs> = Vec::new();
            for gap in gaps {
                now += (gap / 10) * S;
                if w.take(rule, now) {
                    sent.push(now);
                } else {
                    let free = w.next_free(rule, now).expect("a time when one is free");
                    prop_assert!(free > now);
                }
            }
            for (i, start) in sent.iter().enumerate() {
                let within = sent[i..].iter().filter(|t| *t - *start < 100 * S).count();
                prop_assert!(within <= limit, "{} requests within one window (limit {})", within, limit);
            }
        }
    }
}
