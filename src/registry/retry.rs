//! The retry policy: which failures are transient, and how long to wait
//! before the next attempt (exponential backoff, capped, honouring
//! `Retry-After`). Pure, so the schedule is tested without waiting.

use std::time::Duration;

use reqwest::StatusCode;

/// Retries after the first attempt; the proposal's "at most 10 retries".
pub const MAX_RETRIES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First delay; doubles each retry (1 s in production).
    pub base: Duration,
    /// Longest backoff between two attempts.
    pub cap: Duration,
    /// Longest wait a server's `Retry-After` may ask for.
    pub retry_after_cap: Duration,
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(30),
            max_retries: MAX_RETRIES,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): base * 2^(retry-1),
    /// capped; a server's `Retry-After` wins when longer, still capped.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let backoff = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        match retry_after {
            Some(server) => server.min(self.retry_after_cap).max(backoff),
            None => backoff,
        }
    }
}

/// Statuses worth another attempt: timeouts, throttling and gateway errors.
/// 400, 401, 403, 404, 405 and 413 are answers, not accidents.
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Transport failures worth another attempt: connection refused, reset or
/// closed, timeouts, DNS failures. Not: TLS certificate problems, bad URLs.
pub fn is_transient_error(error: &reqwest::Error) -> bool {
    if error.is_builder() || error.is_redirect() || error.is_decode() {
        return false;
    }
    let chain = crate::error::chain_text(error);
    if chain.contains("certificate")
        || chain.contains("InvalidCertificate")
        || chain.contains("UnknownIssuer")
    {
        return false;
    }
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
}

/// `Retry-After` as seconds (the HTTP-date form is rare from registries and
/// falls back to the backoff).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_thirty() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..=MAX_RETRIES)
            .map(|retry| policy.delay(retry, None).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay(4, Some(Duration::from_secs(3))),
            Duration::from_secs(8),
            "never shorter than the backoff"
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_small_base_scales_the_whole_schedule() {
        let policy = RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(300),
            retry_after_cap: Duration::from_secs(30),
            max_retries: MAX_RETRIES,
        };
        assert_eq!(policy.delay(1, None), Duration::from_millis(10));
        assert_eq!(policy.delay(3, None), Duration::from_millis(40));
        assert_eq!(policy.delay(10, None), Duration::from_millis(300));
        assert_eq!(
            policy.delay(u32::MAX, None),
            Duration::from_millis(300),
            "no overflow"
        );
    }

    #[test]
    fn only_the_documented_statuses_are_transient() {
        let transient: Vec<u16> = (100..600)
            .filter(|code| is_transient_status(StatusCode::from_u16(*code).unwrap()))
            .collect();
        assert_eq!(transient, [408, 429, 500, 502, 503, 504]);
    }

    #[test]
    fn retry_after_parses_seconds_only() {
        assert_eq!(parse_retry_after(" 5 "), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
