//! A circuit breaker: after too many failures in a sliding window it opens and refuses
//! calls for a while, then half-opens to let a probe through, and closes again when the
//! probe succeeds. Its state and transitions are exported as metrics.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// As exported in `cqrs_circuit_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub const fn code(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// How many recent calls the failure rate is computed over.
    pub window: usize,
    /// Calls needed in the window before the rate counts.
    pub minimum_calls: usize,
    /// Opens at this failure rate (percent) or above.
    pub failure_rate_percent: u32,
    /// How long it stays open before letting a probe through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: 10,
            minimum_calls: 5,
            failure_rate_percent: 50,
            open_for: Duration::from_secs(5),
        }
    }
}

struct Inner {
    state: BreakerState,
    outcomes: VecDeque<bool>,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// Called on every state change with the new state.
pub type OnTransition = Box<dyn Fn(BreakerState) + Send + Sync>;

pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    on_transition: OnTransition,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig, on_transition: OnTransition) -> Self {
        on_transition(BreakerState::Closed);
        Self {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                outcomes: VecDeque::new(),
                opened_at: None,
                probe_in_flight: false,
            }),
            on_transition,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.inner.lock().map_or(BreakerState::Open, |i| i.state)
    }

    /// Whether a call may go ahead now.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    pub fn allow_at(&self, now: Instant) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let waited = inner
                    .opened_at
                    .is_none_or(|at| now.duration_since(at) >= self.config.open_for);
                if waited {
                    self.move_to(&mut inner, BreakerState::HalfOpen);
                    inner.probe_in_flight = true;
                }
                waited
            }
            BreakerState::HalfOpen => {
                if inner.probe_in_flight {
                    false
                } else {
                    inner.probe_in_flight = true;
                    true
                }
            }
        }
    }

    /// Ends a round that was allowed but made no call the breaker can judge (nothing to
    /// send, or a failure before sending): a half-open breaker lets the next probe through
    /// instead of waiting forever for an outcome that will never be recorded.
    pub fn release_probe(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.state == BreakerState::HalfOpen {
            inner.probe_in_flight = false;
        }
    }

    /// Records how an allowed call ended.
    pub fn record(&self, success: bool) {
        self.record_at(success, Instant::now());
    }

    pub fn record_at(&self, success: bool, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        match inner.state {
            BreakerState::HalfOpen => {
                inner.probe_in_flight = false;
                if success {
                    inner.outcomes.clear();
                    self.move_to(&mut inner, BreakerState::Closed);
                } else {
                    inner.opened_at = Some(now);
                    self.move_to(&mut inner, BreakerState::Open);
                }
            }
            BreakerState::Closed => {
                inner.outcomes.push_back(success);
                while inner.outcomes.len() > self.config.window.max(1) {
                    inner.outcomes.pop_front();
                }
                let calls = inner.outcomes.len();
                let failures = inner.outcomes.iter().filter(|ok| !**ok).count();
                if calls >= self.config.minimum_calls.max(1)
                    && failures * 100 >= calls * self.config.failure_rate_percent as usize
                {
                    inner.opened_at = Some(now);
                    self.move_to(&mut inner, BreakerState::Open);
                }
            }
            BreakerState::Open => {}
        }
    }

    fn move_to(&self, inner: &mut Inner, state: BreakerState) {
        if inner.state != state {
            tracing::info!(
                from = inner.state.as_str(),
                to = state.as_str(),
                "circuit breaker"
            );
            inner.state = state;
            (self.on_transition)(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn breaker() -> (CircuitBreaker, Arc<Mutex<Vec<BreakerState>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let b = CircuitBreaker::new(
            BreakerConfig {
                window: 10,
                minimum_calls: 4,
                failure_rate_percent: 50,
                open_for: Duration::from_secs(5),
            },
            Box::new(move |s| log.lock().expect("lock").push(s)),
        );
        (b, seen)
    }

    #[test]
    fn opens_at_the_failure_rate_then_half_opens_and_closes_on_a_good_probe() {
        let (b, seen) = breaker();
        let t0 = Instant::now();
        for ok in [true, false, true] {
            b.record_at(ok, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed, "too few calls to judge");
        b.record_at(false, t0); // 2 of 4 failed: 50 %
        assert_eq!(b.state(), BreakerState::Open);
        assert!(
            !b.allow_at(t0 + Duration::from_secs(4)),
            "refuses while open"
        );
        assert!(
            b.allow_at(t0 + Duration::from_secs(5)),
            "one probe after the wait"
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            !b.allow_at(t0 + Duration::from_secs(5)),
            "only one probe at a time"
        );
        b.record_at(true, t0 + Duration::from_secs(6));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            *seen.lock().expect("lock"),
            [
                BreakerState::Closed,
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed
            ]
        );
    }

    #[test]
    fn a_failed_probe_opens_it_again_for_another_wait() {
        let (b, _) = breaker();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record_at(false, t0);
        }
        assert!(b.allow_at(t0 + Duration::from_secs(5)));
        b.record_at(false, t0 + Duration::from_secs(5));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow_at(t0 + Duration::from_secs(9)));
        assert!(b.allow_at(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn a_probe_round_that_judged_nothing_does_not_wedge_it_half_open() {
        let (b, _) = breaker();
        let t0 = Instant::now();
        for _ in 0..4 {
            b.record_at(false, t0);
        }
        assert!(b.allow_at(t0 + Duration::from_secs(5)), "the probe");
        // The probe round found nothing to send: no outcome is recorded.
        b.release_probe();
        assert!(
            b.allow_at(t0 + Duration::from_secs(6)),
            "the next round may probe again"
        );
        b.record_at(true, t0 + Duration::from_secs(6));
        assert_eq!(b.state(), BreakerState::Closed);
        b.release_probe();
        assert_eq!(b.state(), BreakerState::Closed, "no effect when closed");
    }

    #[test]
    fn the_rate_counts_only_the_recent_window() {
        let (b, _) = breaker();
        let t0 = Instant::now();
        for _ in 0..20 {
            b.record_at(true, t0);
        }
        for _ in 0..4 {
            b.record_at(false, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed, "4 of the last 10 failed");
        b.record_at(false, t0);
        assert_eq!(
            b.state(),
            BreakerState::Open,
            "5 of the last 10, though 5 of 25 overall"
        );
    }
}
