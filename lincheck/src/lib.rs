//! tinykv-lincheck: decides whether a recorded history of key-value operations is linearizable.
//!
//! Tests record every client operation with the instants it was invoked and answered (a
//! monotonic clock), then ask [`check_kv`]. The history is split per key (linearizability is
//! compositional, so each key is an independent register) and each key's history is searched
//! with the Wing–Gong–Lowe algorithm, memoising (set of linearized operations, register value)
//! so that equivalent branches are explored once.
//!
//! An operation whose outcome is unknown (timed out, connection lost after sending) is a write
//! that may or may not have happened: it is given an answer time after every other operation,
//! so the search may place it anywhere after its invocation, or treat it as never visible to
//! the reads. A read that got no answer constrains nothing and is dropped. A request refused
//! before it could take effect (e.g. NotLeader) must not be recorded at all.
//!
//! This crate is test tooling: it has no dependencies and no I/O.

mod wgl;

pub use wgl::{Model, check_history};

use std::collections::BTreeMap;

/// One recorded key-value operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Which client issued it (for reports only).
    pub client: u64,
    /// Monotonic instant of the invocation.
    pub call: u64,
    /// Monotonic instant of the answer; `None` when the outcome is unknown.
    pub ret: Option<u64>,
    pub kind: OpKind,
}

/// What an operation did and, for reads, what it observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
        found: Option<Vec<u8>>,
    },
    /// Writes `value` if the key holds `expected` (`None`: absent). `observed` is the answer,
    /// whether it wrote and what the key held, or `None` with an unknown outcome.
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
        observed: Option<(bool, Option<Vec<u8>>)>,
    },
}

impl OpKind {
    pub fn key(&self) -> &[u8] {
        match self {
            OpKind::Put { key, .. }
            | OpKind::Delete { key }
            | OpKind::Get { key, .. }
            | OpKind::Cas { key, .. } => key,
        }
    }
}

/// A key whose history admits no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: Vec<u8>,
    /// That key's operations, in invocation order, for the report.
    pub operations: Vec<Operation>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "key {:?}: no linearization of {} operations:",
            String::from_utf8_lossy(&self.key),
            self.operations.len()
        )?;
        for op in &self.operations {
            let ret = op.ret.map_or("?".to_string(), |r| r.to_string());
            writeln!(
                f,
                "  client {} [{}, {}] {:?}",
                op.client, op.call, ret, op.kind
            )?;
        }
        Ok(())
    }
}

/// A single-key register: absent or holding a value.
struct Register;

impl Model for Register {
    type State = Option<Vec<u8>>;
    type Op = OpKind;

    fn step(&self, state: &Option<Vec<u8>>, op: &OpKind) -> Option<Option<Vec<u8>>> {
        match op {
            OpKind::Put { value, .. } => Some(Some(value.clone())),
            OpKind::Delete { .. } => Some(None),
            OpKind::Get { found, .. } => (found == state).then(|| state.clone()),
            OpKind::Cas {
                expected,
                value,
                observed,
                ..
            } => {
                let matches = expected == state;
                let after = if matches {
                    Some(value.clone())
                } else {
                    state.clone()
                };
                match observed {
                    // Unknown: it took effect (as the state decides) or, placed last, never
                    // showed; either is legal.
                    None => Some(after),
                    Some((swapped, previous)) => {
                        (previous == state && *swapped == matches).then_some(after)
                    }
                }
            }
        }
    }
}

/// Checks a whole key-value history, every key starting absent. Returns the first key (in key
/// order) that cannot be linearized.
pub fn check_kv(history: &[Operation]) -> Result<(), Box<Violation>> {
    let mut per_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in history {
        per_key.entry(op.kind.key()).or_default().push(op);
    }
    for (key, ops) in per_key {
        let never = ops
            .iter()
            .filter_map(|o| o.ret)
            .chain(ops.iter().map(|o| o.call))
            .max();
        let after_all = never.unwrap_or(0) + 1;
        let mut calls = Vec::new();
        for op in &ops {
            match (op.ret, &op.kind) {
                (None, OpKind::Get { .. }) => continue,
                (Some(ret), _) => calls.push((op.call, ret, op.kind.clone())),
                (None, _) => calls.push((op.call, after_all, op.kind.clone())),
            }
        }
        if !check_history(&Register, None, &calls) {
            let mut operations: Vec<Operation> = ops.into_iter().cloned().collect();
            operations.sort_by_key(|o| o.call);
            return Err(Box::new(Violation {
                key: key.to_vec(),
                operations,
            }));
        }
    }
    Ok(())
}
