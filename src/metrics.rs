//! Request counters and a request-duration histogram, rendered in the Prometheus text
//! format.
//!
//! Each (named credential, external credential, principal) gets its series at config load;
//! a request updates atomics on a series it already holds, with no lookup and no lock. A
//! label never holds anything a caller chose: an unknown credential name is counted under
//! an empty label, never its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a request ended: an upstream status class or one of callout's error codes.
pub const OUTCOMES: [&str; 17] = [
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "bad_request",
    "caller_unauthorized",
    "no_principal",
    "unknown_named_credential",
    "method_not_allowed",
    "body_too_large",
    "token_request_failed",
    "upstream_unreachable",
    "token_request_timeout",
    "upstream_timeout",
    "upstream_busy",
    "not_found",
    "admin_required",
];

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    pub named_credential: Box<str>,
    pub external_credential: Box<str>,
    pub principal: Box<str>,
}

/// The counters of one label set.
#[derive(Default)]
pub struct Series {
    outcomes: [AtomicU64; OUTCOMES.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Series {
    pub fn record(&self, outcome: Outcome, elapsed: Duration) {
        let index = match outcome {
            Outcome::Status(status) => (status / 100).clamp(2, 5) as usize - 2,
            Outcome::Error(code) => OUTCOMES
                .iter()
                .position(|o| *o == code)
                .unwrap_or(OUTCOMES.len() - 1),
        };
        self.outcomes[index].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|upper| secs <= *upper) {
            self.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The token requests of one token slot, as the metrics show them.
pub struct TokenCounts {
    pub external_credential: Box<str>,
    pub principal: Box<str>,
    pub fetches: u64,
    pub failures: u64,
    /// Which client secret the principal authenticates with, when it has one.
    pub secret_in_use: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Status(u16),
    Error(&'static str),
}

/// All series a process has made, kept across reloads so counters never go backwards.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<Labels, Arc<Series>>>,
}

impl Metrics {
    pub fn series(&self, labels: Labels) -> Arc<Series> {
        self.series
            .lock()
            .expect("metrics poisoned")
            .entry(labels)
            .or_default()
            .clone()
    }

    /// The Prometheus text exposition of every series and of the token slots.
    pub fn render(&self, tokens: &[TokenCounts]) -> String {
        let series: Vec<(Labels, Arc<Series>)> = self
            .series
            .lock()
            .expect("metrics poisoned")
            .iter()
            .map(|(l, s)| (l.clone(), s.clone()))
            .collect();
        let mut out = String::new();
        out.push_str("# HELP callout_requests_total Requests handled, by outcome: upstream status class or callout error code.\n");
        out.push_str("# TYPE callout_requests_total counter\n");
        for (labels, s) in &series {
            for (i, outcome) in OUTCOMES.iter().enumerate() {
                let n = s.outcomes[i].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "callout_requests_total{{{},outcome=\"{outcome}\"}} {n}",
                        label_text(labels)
                    );
                }
            }
        }
        out.push_str("# HELP callout_request_duration_seconds Time from receiving a request to sending its response headers.\n");
        out.push_str("# TYPE callout_request_duration_seconds histogram\n");
        for (labels, s) in &series {
            let l = label_text(labels);
            let mut cumulative = 0;
            for (i, upper) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "callout_request_duration_seconds_bucket{{{l},le=\"{upper}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "callout_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
            );
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "callout_request_duration_seconds_sum{{{l}}} {sum}");
            let _ = writeln!(out, "callout_request_duration_seconds_count{{{l}}} {count}");
        }
        out.push_str("# HELP callout_token_requests_total Token requests made, by outcome.\n");
        out.push_str("# TYPE callout_token_requests_total counter\n");
        for t in tokens {
            let l = format!(
                "external_credential=\"{}\",principal=\"{}\"",
                escape(&t.external_credential),
                escape(&t.principal)
            );
            let _ = writeln!(
                out,
                "callout_token_requests_total{{{l},outcome=\"ok\"}} {}",
                t.fetches - t.failures.min(t.fetches)
            );
            let _ = writeln!(
                out,
                "callout_token_requests_total{{{l},outcome=\"error\"}} {}",
                t.failures
            );
        }
        out.push_str("# HELP callout_client_secret_in_use The client secret each principal authenticates with: client_secret, or next_client_secret once the current one was refused.\n");
        out.push_str("# TYPE callout_client_secret_in_use gauge\n");
        for t in tokens {
            if let Some(secret) = t.secret_in_use {
                let _ = writeln!(
                    out,
                    "callout_client_secret_in_use{{external_credential=\"{}\",principal=\"{}\",secret=\"{secret}\"}} 1",
                    escape(&t.external_credential),
                    escape(&t.principal)
                );
            }
        }
        out
    }
}

fn label_text(l: &Labels) -> String {
    format!(
        "named_credential=\"{}\",external_credential=\"{}\",principal=\"{}\"",
        escape(&l.named_credential),
        escape(&l.external_credential),
        escape(&l.principal)
    )
}

/// Label values are config names (letters, digits, underscores), but escape anyway.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
