//! The Outline rate limiter: every Outline call takes a token here first, so a bulk run meets no 429.
//!
//! Outline counts requests in fixed windows (`RATE_LIMITER_REQUESTS` per `RATE_LIMITER_DURATION_WINDOW`,
//! docs/src/upstream/outline.md §4.1–§4.2), each starting at the first request after the last one ended. A GCRA
//! with rate r and burst b admits at most b + r·W requests in any span W, wherever it starts, so
//! b + r·W = R is the most that never meets a 429. The burst is 1 % of the limit, between 2 and 10: enough
//! for a sign-in's calls to go out at once, and at least 2 so that a waiter woken a millisecond late by the
//! timer does not lose its slot (with a burst of 1 every late wake-up pushes all later calls back, which
//! cost 5 % over 300 writes). The steady rate is then 96 % of a limit of 50 a second and 99 % of Outline's
//! default 1000 a minute, so bulk work runs at about the limit itself. `groups.create` has its own
//! 10-a-minute limit (docs/src/upstream/outline.md §4.3), kept the same way.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

use crate::clients::Lane;
use crate::configuration::RateLimit;

/// Outline's per-minute limit for `groups.create` (docs/src/upstream/outline.md §4.3).
pub const GROUP_CREATES_PER_MINUTE: u32 = 10;

pub struct OutlineLimiter {
    general: DefaultDirectRateLimiter,
    creates: DefaultDirectRateLimiter,
    clock: DefaultClock,
    /// When Outline last answered 429, the end of the wait it asked for (ms after `started`): no call goes
    /// out before it, from any job, since a 429 means the window is spent whatever this limiter believed.
    paused_until_ms: AtomicU64,
    started: std::time::Instant,
    /// Interactive callers waiting for a token; bulk callers step aside while any are.
    interactive_waiting: AtomicUsize,
    interactive_done: Notify,
    /// The rate the limiter actually allows, in requests per second (for reports and benchmarks).
    pub allowed_per_second: f64,
}

/// A quota of at most `requests` in any `window`: rate (requests − burst) / window, burst as given.
fn quota(requests: u32, window: Duration, burst: u32) -> Quota {
    let burst = burst.clamp(1, requests.max(1));
    let steady = f64::from(requests.saturating_sub(burst).max(1));
    let period = Duration::from_secs_f64((window.as_secs_f64() / steady).max(1e-6));
    Quota::with_period(period)
        .unwrap_or_else(|| unreachable!("period is positive"))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

impl OutlineLimiter {
    pub fn new(limit: RateLimit) -> OutlineLimiter {
        let burst = (limit.requests / 100).clamp(2, 10).min(limit.requests);
        let steady = limit.requests.saturating_sub(burst).max(1);
        OutlineLimiter {
            general: RateLimiter::direct(quota(limit.requests, limit.window, burst)),
            // Half of the minute's creates may go at once: a sign-in and a new group's first event each
            // create one, and with a burst of 1 the second waited 6.7 s for its token.
            creates: RateLimiter::direct(quota(
                GROUP_CREATES_PER_MINUTE,
                Duration::from_secs(60),
                GROUP_CREATES_PER_MINUTE / 2,
            )),
            clock: DefaultClock::default(),
            paused_until_ms: AtomicU64::new(0),
            started: std::time::Instant::now(),
            interactive_waiting: AtomicUsize::new(0),
            interactive_done: Notify::new(),
            allowed_per_second: f64::from(steady) / limit.window.as_secs_f64(),
        }
    }

    /// Holds every call back for `wait`, after a 429 that asked for it.
    pub fn pause_for(&self, wait: Duration) {
        let until = (self.started.elapsed() + wait).as_millis() as u64;
        self.paused_until_ms.fetch_max(until, Ordering::SeqCst);
    }

    async fn wait_out_pause(&self) {
        loop {
            let until = self.paused_until_ms.load(Ordering::SeqCst);
            let now = self.started.elapsed().as_millis() as u64;
            if now >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }

    /// Waits for a token in `lane`. A pause that began while waiting is waited out too, so no call goes out
    /// inside a window a 429 closed.
    pub async fn acquire(&self, lane: Lane) {
        loop {
            self.wait_out_pause().await;
            self.acquire_token(lane).await;
            let until = self.paused_until_ms.load(Ordering::SeqCst);
            if self.started.elapsed().as_millis() as u64 >= until {
                return;
            }
        }
    }

    async fn acquire_token(&self, lane: Lane) {
        match lane {
            Lane::Interactive => {
                self.interactive_waiting.fetch_add(1, Ordering::SeqCst);
                self.general.until_ready().await;
                self.interactive_waiting.fetch_sub(1, Ordering::SeqCst);
                self.interactive_done.notify_waiters();
            }
            Lane::Bulk => loop {
                if self.interactive_waiting.load(Ordering::SeqCst) > 0 {
                    // Re-check at least every 50 ms in case a notification was missed.
                    let _ = tokio::time::timeout(
                        Duration::from_millis(50),
                        self.interactive_done.notified(),
                    )
                    .await;
                    continue;
                }
                match self.general.check() {
                    Ok(()) => return,
                    Err(not_until) => {
                        tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await
                    }
                }
            },
        }
    }

    pub async fn acquire_create(&self) {
        self.creates.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_window_never_admits_more_than_the_limit() {
        let limiter = OutlineLimiter::new(RateLimit {
            requests: 40,
            window: Duration::from_millis(400),
        });
        let start = std::time::Instant::now();
        let mut admitted = 0;
        while start.elapsed() < Duration::from_millis(400) {
            limiter.acquire(Lane::Bulk).await;
            if start.elapsed() < Duration::from_millis(400) {
                admitted += 1;
            }
        }
        assert!(admitted <= 40, "admitted {admitted} in one window");
        assert!(
            admitted >= 10,
            "admitted only {admitted}: the limiter is far too strict"
        );
    }
}
