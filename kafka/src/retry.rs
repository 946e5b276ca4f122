//! Retry with exponential backoff, full jitter and a cap; permanent errors are not retried.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Many quick attempts: 5 attempts, 100 ms growing to at most 500 ms.
    pub const AGGRESSIVE: Self = Self {
        max_attempts: 5,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
    };

    /// Few patient attempts: 3 attempts, 1 s growing to at most 10 s.
    pub const CONSERVATIVE: Self = Self {
        max_attempts: 3,
        initial_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(10),
    };

    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "aggressive" => Some(Self::AGGRESSIVE),
            "conservative" => Some(Self::CONSERVATIVE),
            _ => None,
        }
    }

    /// The ceiling of the wait before attempt `attempt + 1` (after `attempt` failures):
    /// `initial × 2^(attempt-1)`, capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The wait before the next attempt: uniformly random up to the ceiling ("full
    /// jitter"), so that many clients failing together do not retry together.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(attempt).as_micros() as u64;
        let half = ceiling / 2;
        // Half fixed, half random: never hammer at once, never wait longer than the cap.
        Duration::from_micros(
            half + if ceiling == 0 {
                0
            } else {
                random % (ceiling - half + 1)
            },
        )
    }

    /// Whether another attempt may follow `attempt` failed attempts.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

/// A random number for jitter, from the OS generator behind UUID v4.
pub fn jitter_seed() -> u64 {
    (uuid::Uuid::new_v4().as_u128() >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap() {
        let p = RetryPolicy::AGGRESSIVE;
        let ceilings: Vec<u64> = (1..=5).map(|a| p.ceiling(a).as_millis() as u64).collect();
        assert_eq!(ceilings, [100, 200, 400, 500, 500]);
        assert_eq!(
            RetryPolicy::CONSERVATIVE.ceiling(5),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        let p = RetryPolicy::CONSERVATIVE;
        for random in [0, 1, 12345, u64::MAX] {
            let d = p.delay(2, random);
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
        assert_ne!(
            p.delay(3, 1),
            p.delay(3, 2_000_000),
            "random spreads the waits"
        );
    }

    #[test]
    fn attempts_are_counted_including_the_first() {
        let p = RetryPolicy::CONSERVATIVE;
        assert!(p.allows(1) && p.allows(2) && !p.allows(3));
        assert_eq!(
            RetryPolicy::preset("aggressive"),
            Some(RetryPolicy::AGGRESSIVE)
        );
        assert_eq!(RetryPolicy::preset("reckless"), None);
    }
}
