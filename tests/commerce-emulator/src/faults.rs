//! Injected faults: rules that match a route pattern and change what the caller sees (an error
//! status, extra latency, a timeout, or an applied request whose response is lost), for the next
//! N matching calls or a seeded fraction of them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` (with `body`, default a Magento-shaped error body) without applying the
    /// request. `retry_after` adds a `Retry-After` header.
    Status {
        status: u16,
        #[serde(default)]
        body: Option<Value>,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Wait `ms` before handling the request (it is then handled normally).
    Latency { ms: u64 },
    /// Hold the request for `ms` (default 30 000), then answer 504 without applying it.
    Timeout {
        #[serde(default)]
        ms: Option<u64>,
    },
    /// Apply the request, then lose the answer: `mode` `reset` (default) aborts the connection
    /// mid-response; `status` answers `status` (default 502) instead of the real answer;
    /// `timeout` holds `ms` (default 30 000) and answers 504.
    LostResponse {
        #[serde(default)]
        mode: Option<String>,
        #[serde(default)]
        status: Option<u16>,
        #[serde(default)]
        ms: Option<u64>,
    },
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Assigned by the emulator.
    #[serde(default)]
    pub id: u64,
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Route pattern: `*` matches any run of characters. Matched against the route
    /// (`/V1/inventory/source-items`, store and `/rest` removed, `/async[/bulk]` kept in front)
    /// and against the path as sent. Any route when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// Let this many matching calls through first.
    #[serde(default)]
    pub skip: u64,
    /// Fire for this many calls, then retire (unlimited when absent).
    #[serde(default)]
    pub times: Option<u64>,
    /// Fire for this fraction of matching calls (seeded, reproducible); 1 when absent.
    #[serde(default)]
    pub probability: Option<f64>,
    /// How often it fired.
    #[serde(default)]
    pub fired: u64,
}

/// `*`-glob match.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// A small seeded generator (xorshift64*), so fractions are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    pub fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn next_u64(&mut self) -> u64 {
        let _ = self.next_f64();
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The faults that fire for a call, in rule order (consuming their budgets).
pub fn pick(
    rules: &mut Vec<FaultRule>,
    rng: &mut Rng,
    method: &str,
    route: &str,
    path: &str,
) -> Vec<(u64, FaultKind)> {
    let mut fired = Vec::new();
    for rule in rules.iter_mut() {
        if rule.times == Some(0) {
            continue;
        }
        let m_ok = rule
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let p_ok = rule
            .path
            .as_deref()
            .is_none_or(|p| glob(p, route) || glob(p, path));
        if !(m_ok && p_ok) {
            continue;
        }
        if rule.skip > 0 {
            rule.skip -= 1;
            continue;
        }
        if let Some(p) = rule.probability
            && rng.next_f64() >= p
        {
            continue;
        }
        if let Some(t) = &mut rule.times {
            *t -= 1;
        }
        rule.fired += 1;
        fired.push((rule.id, rule.kind.clone()));
    }
    rules.retain(|r| r.times != Some(0));
    fired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_routes() {
        assert!(glob(
            "/V1/inventory/source-items",
            "/V1/inventory/source-items"
        ));
        assert!(glob("*/source-items*", "/V1/inventory/source-items-delete"));
        assert!(glob("/V1/order/*/ship", "/V1/order/12/ship"));
        assert!(!glob("/V1/order/*/ship", "/V1/order/12/invoice"));
    }

    #[test]
    fn a_rule_fires_after_skip_for_its_budget() {
        let mut rules = vec![FaultRule {
            id: 1,
            method: Some("POST".into()),
            path: Some("/V1/inventory/*".into()),
            kind: FaultKind::Status {
                status: 503,
                body: None,
                retry_after: None,
            },
            skip: 1,
            times: Some(2),
            probability: None,
            fired: 0,
        }];
        let mut rng = Rng::new(7);
        let mut hits = Vec::new();
        for _ in 0..5 {
            hits.push(
                !pick(
                    &mut rules,
                    &mut rng,
                    "POST",
                    "/V1/inventory/x",
                    "/rest/V1/inventory/x",
                )
                .is_empty(),
            );
        }
        assert_eq!(hits, vec![false, true, true, false, false]);
        assert!(rules.is_empty());
    }

    #[test]
    fn fractions_are_reproducible() {
        let run = || {
            let mut rules = vec![FaultRule {
                id: 1,
                method: None,
                path: None,
                kind: FaultKind::Latency { ms: 1 },
                skip: 0,
                times: None,
                probability: Some(0.3),
                fired: 0,
            }];
            let mut rng = Rng::new(42);
            (0..200)
                .filter(|_| !pick(&mut rules, &mut rng, "GET", "/V1/x", "/rest/V1/x").is_empty())
                .count()
        };
        let n = run();
        assert_eq!(n, run());
        assert!((30..=90).contains(&n), "{n}");
    }
}
