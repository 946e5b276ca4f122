//! Whether a consumer of events (a projection, a Kafka consumer, the relay) is making
//! progress, for readiness and operators.
//!
//! A worker reports each step forward (`advanced`) and each failed attempt (`failed`).
//! It is *stuck* when it has been failing without a step forward for longer than the
//! configured time: work is waiting (the failed attempt was for something to apply) and
//! none of it gets done. An idle worker is never stuck, however long nothing arrives.
//! Readiness lists every stuck worker with its last error, so an operator sees which and
//! why (`/health/ready`).

use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    failing_since: Option<Instant>,
    failed_attempts: u64,
    last_error: Option<String>,
}

/// One worker's progress; cheap to clone, every clone reports to the same state.
#[derive(Debug, Clone)]
pub struct Progress {
    name: Arc<str>,
    /// Whether being stuck makes the process not ready (a read model going stale), or is
    /// only reported (the relay: commands still work, events wait in the outbox).
    critical: bool,
    state: Arc<Mutex<State>>,
}

/// A stuck worker, as readiness reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stuck {
    pub name: String,
    pub critical: bool,
    pub failing_for_seconds: u64,
    pub failed_attempts: u64,
    pub last_error: String,
}

impl Progress {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            critical: true,
            state: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Something was applied (or there was nothing to do): not failing any more.
    pub fn advanced(&self) {
        if let Ok(mut state) = self.state.lock()
            && state.failing_since.is_some()
        {
            *state = State::default();
        }
    }

    /// An attempt to apply waiting work failed.
    pub fn failed(&self, error: &str) {
        self.failed_at(error, Instant::now());
    }

    pub fn failed_at(&self, error: &str, now: Instant) {
        if let Ok(mut state) = self.state.lock() {
            state.failing_since.get_or_insert(now);
            state.failed_attempts += 1;
            state.last_error = Some(error.to_owned());
        }
    }

    /// Whether the worker is failing now, whatever for how long.
    pub fn is_failing(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.failing_since.is_some())
    }

    /// Stuck: failing without progress for at least `after`.
    pub fn stuck(&self, after: Duration) -> Option<Stuck> {
        self.stuck_at(after, Instant::now())
    }

    pub fn stuck_at(&self, after: Duration, now: Instant) -> Option<Stuck> {
        let state = self.state.lock().ok()?;
        let since = state.failing_since?;
        let failing_for = now.saturating_duration_since(since);
        (failing_for >= after).then(|| Stuck {
            name: self.name.to_string(),
            critical: self.critical,
            failing_for_seconds: failing_for.as_secs(),
            failed_attempts: state.failed_attempts,
            last_error: state.last_error.clone().unwrap_or_default(),
        })
    }
}

/// Every worker of a process, for readiness.
#[derive(Debug, Clone, Default)]
pub struct ProgressBoard {
    workers: Arc<Mutex<Vec<Progress>>>,
}

impl ProgressBoard {
    /// A new worker on the board.
    pub fn register(&self, name: impl Into<Arc<str>>) -> Progress {
        let progress = Progress::new(name);
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(progress.clone());
        }
        progress
    }

    /// A worker whose being stuck is reported but does not make the process not ready.
    pub fn register_informational(&self, name: impl Into<Arc<str>>) -> Progress {
        let mut progress = Progress::new(name);
        progress.critical = false;
        if let Ok(mut workers) = self.workers.lock() {
            workers.push(progress.clone());
        }
        progress
    }

    /// The workers stuck for at least `after`.
    pub fn stuck(&self, after: Duration) -> Vec<Stuck> {
        self.workers.lock().map_or_else(
            |_| Vec::new(),
            |workers| workers.iter().filter_map(|w| w.stuck(after)).collect(),
        )
    }

    pub fn names(&self) -> Vec<String> {
        self.workers.lock().map_or_else(
            |_| Vec::new(),
            |w| w.iter().map(|p| p.name().to_owned()).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuck_only_after_failing_without_progress_for_the_configured_time() {
        let p = Progress::new("samples");
        let t0 = Instant::now();
        let after = Duration::from_secs(30);
        assert_eq!(
            p.stuck_at(after, t0 + Duration::from_secs(3600)),
            None,
            "idle is not stuck"
        );
        p.failed_at("database down", t0);
        p.failed_at("still down", t0 + Duration::from_secs(10));
        assert_eq!(p.stuck_at(after, t0 + Duration::from_secs(29)), None);
        let stuck = p
            .stuck_at(after, t0 + Duration::from_secs(30))
            .expect("stuck");
        assert_eq!(stuck.last_error, "still down");
        assert_eq!(stuck.failed_attempts, 2);
        p.advanced();
        assert_eq!(
            p.stuck_at(after, t0 + Duration::from_secs(60)),
            None,
            "progress clears it"
        );
    }
}
