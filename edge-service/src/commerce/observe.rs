//! Observability: one [`CallRecord`] per client call, handed to a [`CallObserver`].
//!
//! A call is one typed client method: it may take several HTTP attempts, wait for the budget,
//! refresh a token and probe after a lost answer; its record says which route it was, the
//! last HTTP status, how many attempts it took, how long it waited for the budget and in
//! total, the idempotency key of a write, and how it ended. The client hands every record to
//! its observer (success and failure alike) and puts it into every [`CommerceError`].
//! Records hold no secrets: no headers, no bodies, no query strings (those can hold SKUs but
//! never tokens; they are left out to keep lines short).
//!
//! [`CommerceError`]: super::errors::CommerceError

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::idempotency::IdempotencyKey;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// A 2xx answer.
    Ok,
    /// The answer was lost, and the probe showed the write had been applied; the call's
    /// result comes from the probe.
    Recovered,
    /// The call failed (the error says why).
    Failed,
}

/// The record of one client call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// A number unique within the client (also the jitter key of its backoff).
    pub call_id: u64,
    /// `GET`, `POST`, `PUT`, `DELETE`.
    pub method: &'static str,
    /// The route template, e.g. `/V1/order/:orderId/ship`.
    pub route: &'static str,
    /// The path that was called (no query string), e.g. `/rest/V1/order/12/ship`.
    pub path: String,
    /// The last HTTP status seen, if any answer came.
    pub status: Option<u16>,
    /// HTTP attempts made (probes are calls of their own).
    pub attempts: u32,
    /// Time from the start of the call to its end, budget waits and backoff included.
    pub elapsed: Duration,
    /// Time spent waiting for the shared request budget.
    pub budget_wait: Duration,
    /// The idempotency key of a write.
    pub idempotency_key: Option<IdempotencyKey>,
    /// How it ended.
    pub outcome: CallOutcome,
}

impl fmt::Display for CallRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.method, self.route, self.path)?;
        match self.status {
            Some(s) => write!(f, " status {s}")?,
            None => f.write_str(" no answer")?,
        }
        write!(
            f,
            ", {} attempt{}, {}ms",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.elapsed.as_millis()
        )?;
        if !self.budget_wait.is_zero() {
            write!(f, " (budget wait {}ms)", self.budget_wait.as_millis())?;
        }
        if let Some(k) = &self.idempotency_key {
            write!(f, ", key {k}")?;
        }
        match self.outcome {
            CallOutcome::Ok => Ok(()),
            CallOutcome::Recovered => f.write_str(", recovered after a lost answer"),
            CallOutcome::Failed => f.write_str(", failed"),
        }
    }
}

/// Receives the record of every call.
pub trait CallObserver: Send + Sync + fmt::Debug {
    /// Called once per call, when it ends.
    fn record(&self, record: &CallRecord);
}

/// Discards records.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl CallObserver for NoObserver {
    fn record(&self, _record: &CallRecord) {}
}

/// Keeps the last `capacity` records in memory (for tests, the status page, a debug dump).
#[derive(Debug, Clone)]
pub struct MemoryLog {
    capacity: usize,
    records: Arc<Mutex<VecDeque<CallRecord>>>,
}

impl MemoryLog {
    /// A log keeping at most `capacity` records (the oldest go first).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            records: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<CallRecord> {
        self.records
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl CallObserver for MemoryLog {
    fn record(&self, record: &CallRecord) {
        if let Ok(mut r) = self.records.lock() {
            if r.len() == self.capacity {
                r.pop_front();
            }
            r.push_back(record.clone());
        }
    }
}

/// Writes one line per call to standard error.
#[derive(Debug, Default, Clone, Copy)]
pub struct StderrObserver;

impl CallObserver for StderrObserver {
    fn record(&self, record: &CallRecord) {
        eprintln!("commerce: {record}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: CallOutcome) -> CallRecord {
        CallRecord {
            call_id: 7,
            method: "POST",
            route: "/V1/order/:orderId/ship",
            path: "/rest/V1/order/12/ship".to_owned(),
            status: Some(200),
            attempts: 2,
            elapsed: Duration::from_millis(34),
            budget_wait: Duration::from_millis(5),
            idempotency_key: IdempotencyKey::parse("ship-12-a").ok(),
            outcome,
        }
    }

    #[test]
    fn a_record_prints_as_one_line_naming_route_status_attempts_and_key() {
        assert_eq!(
            record(CallOutcome::Recovered).to_string(),
            "POST /V1/order/:orderId/ship (/rest/V1/order/12/ship) status 200, 2 attempts, 34ms \
             (budget wait 5ms), key ship-12-a, recovered after a lost answer"
        );
    }

    #[test]
    fn memory_log_keeps_the_newest_records() {
        let log = MemoryLog::new(2);
        for i in 0..3 {
            let mut r = record(CallOutcome::Ok);
            r.call_id = i;
            log.record(&r);
        }
        let ids: Vec<u64> = log.records().iter().map(|r| r.call_id).collect();
        assert_eq!(ids, vec![1, 2]);
    }
}
