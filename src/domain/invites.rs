//! Outline's `users.invite` allows 50 requests an hour, each with up to 20 people (docs/upstream/outline.md
//! §6.8). Outline counts in fixed windows that start at a request the bridge cannot see, so the bridge keeps
//! to the stricter rule: at most 50 requests in any hour. Then no fixed window can ever hold more. A GCRA
//! limiter (governor's) cannot say "any hour": with a burst of 50 it lets close to 100 through in one.
//! Pure: the caller passes the clock in.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// `UserValidation.maxInvitesPerRequest` in Outline's `shared/validations.ts`.
pub const INVITES_PER_REQUEST: usize = 20;
/// `RateLimiterStrategy.FiftyPerHour` on `users.invite`.
pub const REQUESTS_PER_WINDOW: usize = 50;
pub const WINDOW: Duration = Duration::from_secs(3600);

/// The requests sent in the last hour, oldest first.
#[derive(Debug)]
pub struct RequestWindow {
    limit: usize,
    window: Duration,
    sent: VecDeque<Instant>,
    /// After a 429: no request before this, whatever the log says (a restart forgot earlier requests).
    blocked_until: Option<Instant>,
}

impl RequestWindow {
    pub fn new(limit: usize, window: Duration) -> RequestWindow {
        RequestWindow {
            limit,
            window,
            sent: VecDeque::new(),
            blocked_until: None,
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            self.sent.pop_front();
        }
        if self.blocked_until.is_some_and(|b| b <= now) {
            self.blocked_until = None;
        }
    }

    /// Requests that may go out now.
    pub fn available(&mut self, now: Instant) -> usize {
        self.forget_old(now);
        if self.blocked_until.is_some() {
            return 0;
        }
        self.limit.saturating_sub(self.sent.len())
    }

    pub fn record(&mut self, now: Instant) {
        self.forget_old(now);
        self.sent.push_back(now);
    }

    /// Outline answered 429: nothing more until `wait` has passed (an hour when it did not say).
    pub fn block(&mut self, now: Instant, wait: Option<Duration>) {
        self.blocked_until = Some(now + wait.unwrap_or(self.window));
    }

    /// When the next request may go out; `None` when one may go now.
    pub fn next_free(&mut self, now: Instant) -> Option<Instant> {
        if self.available(now) > 0 {
            return None;
        }
        let oldest_expires = if self.sent.len() >= self.limit {
            self.sent.front().map(|t| *t + self.window)
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

    #[test]
    fn a_429_blocks_until_its_wait_has_passed() {
        let t0 = Instant::now();
        let mut w = RequestWindow::new(2, Duration::from_secs(60));
        w.record(t0);
        w.block(t0, Some(Duration::from_secs(5)));
        assert_eq!(w.available(t0 + Duration::from_secs(4)), 0);
        assert_eq!(w.next_free(t0), Some(t0 + Duration::from_secs(5)));
        assert_eq!(w.available(t0 + Duration::from_secs(5)), 1);
        w.block(t0, None);
        assert_eq!(w.next_free(t0), Some(t0 + Duration::from_secs(60)));
    }

    proptest! {
        /// Whenever requests are sent as soon as the window allows, no span of one window ever holds more
        /// than the limit, and `next_free` names a later time whenever none may go now.
        #[test]
        fn no_window_ever_holds_more_than_the_limit(
            gaps in prop::collection::vec(0u64..400, 1..300),
            limit in 1usize..8,
        ) {
            let window = Duration::from_secs(100);
            let t0 = Instant::now();
            let mut w = RequestWindow::new(limit, window);
            let mut now = t0;
            let mut sent: Vec<Instant> = Vec::new();
            for gap in gaps {
                now += Duration::from_secs(gap / 10);
                if w.available(now) > 0 {
                    w.record(now);
                    sent.push(now);
                } else {
                    let free = w.next_free(now).expect("a time when one is free");
                    prop_assert!(free > now);
                }
            }
            for (i, start) in sent.iter().enumerate() {
                let within = sent[i..].iter().filter(|t| t.duration_since(*start) < window).count();
                prop_assert!(within <= limit, "{} requests within one window (limit {})", within, limit);
            }
        }
    }
}
