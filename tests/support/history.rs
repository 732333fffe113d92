//! The history of a nemesis run: every client operation with its invocation and completion
//! instants on one monotonic clock, and what came of it. It becomes the checker's input and,
//! for a failing run, a JSON-lines file a person can read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use tinykv_client::ClientError;
use tinykv_lincheck::{OpKind, Operation};
use tinykv_proto::api::KvError;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Put {
        key: String,
        value: String,
    },
    Get {
        key: String,
    },
    Delete {
        key: String,
    },
    /// Every key in `[start, end)`; the answer is read as one read of each of `keys`.
    Scan {
        keys: Vec<String>,
    },
    /// Writes `value` if the key holds `expected` (`None`: absent).
    Cas {
        key: String,
        expected: Option<String>,
        value: String,
    },
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Put { .. } => "put",
            Request::Get { .. } => "get",
            Request::Delete { .. } => "delete",
            Request::Scan { .. } => "scan",
            Request::Cas { .. } => "cas",
        }
    }

    fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Put { .. } | Request::Delete { .. } | Request::Cas { .. }
        )
    }
}

/// What came of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// A get's value.
    Value(Option<String>),
    /// A scan's pairs.
    Pairs(BTreeMap<String, String>),
    /// A compare-and-swap's answer: whether it wrote, and what the key held.
    Swapped(bool, Option<String>),
    /// Refused before it could take effect (writes), or a read that failed: not checked.
    Failed(String),
    /// A write that may or may not have taken effect.
    Unknown(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Written | Outcome::Value(_) | Outcome::Pairs(_) | Outcome::Swapped(..) => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

/// One recorded operation; instants are nanoseconds since the history's origin.
#[derive(Clone, Debug)]
pub struct Record {
    pub client: u64,
    pub call: u64,
    pub ret: u64,
    pub request: Request,
    pub outcome: Outcome,
}

/// Decides what a failed request means for the checker. A write error counts as "did not take
/// effect" only when the node or the client certainly refused it before it was proposed;
/// anything else may have been applied.
pub fn classify_error(request: &Request, e: &ClientError) -> Outcome {
    let text = e.to_string();
    if !request.is_write() {
        return Outcome::Failed(text);
    }
    let refused = matches!(
        e,
        ClientError::NoEndpoints
            | ClientError::Tls(_)
            | ClientError::TlsRefused { .. }
            | ClientError::Kv(
                KvError::NotLeader { .. }
                    | KvError::KeyNotInRegion { .. }
                    | KvError::EpochNotMatch { .. }
                    | KvError::RegionNotFound { .. }
                    | KvError::ServerBusy
                    | KvError::Api(_)
            )
    );
    if refused {
        Outcome::Failed(text)
    } else {
        Outcome::Unknown(text)
    }
}

/// A history shared by the clients of one run.
#[derive(Clone)]
pub struct History {
    origin: Instant,
    records: Arc<Mutex<Vec<Record>>>,
}

impl History {
    pub fn new() -> History {
        History {
            origin: Instant::now(),
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the origin, on the monotonic clock.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn seconds(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    pub fn record(&self, client: u64, call: u64, request: Request, outcome: Outcome) {
        // Two instants read back to back may be equal; the checker needs call < ret.
        let ret = self.now().max(call + 1);
        self.lock().push(Record {
            client,
            call,
            ret,
            request,
            outcome,
        });
    }

    pub fn records(&self) -> Vec<Record> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for History {
    fn default() -> History {
        History::new()
    }
}

/// The checker's view: writes refused before taking effect and failed reads are left out,
/// writes of unknown outcome have no answer, scans become one read per key.
pub fn to_operations(records: &[Record]) -> Vec<Operation> {
    let mut ops = Vec::new();
    for r in records {
        let ret = match &r.outcome {
            Outcome::Failed(_) => continue,
            Outcome::Unknown(_) => None,
            _ => Some(r.ret),
        };
        let op = |kind| Operation {
            client: r.client,
            call: r.call,
            ret,
            kind,
        };
        match (&r.request, &r.outcome) {
            (Request::Put { key, value }, _) => ops.push(op(OpKind::Put {
                key: key.clone().into_bytes(),
                value: value.clone().into_bytes(),
            })),
            (Request::Delete { key }, _) => ops.push(op(OpKind::Delete {
                key: key.clone().into_bytes(),
            })),
            (Request::Get { key }, Outcome::Value(found)) => ops.push(op(OpKind::Get {
                key: key.clone().into_bytes(),
                found: found.clone().map(String::into_bytes),
            })),
            (
                Request::Cas {
                    key,
                    expected,
                    value,
                },
                outcome,
            ) => ops.push(op(OpKind::Cas {
                key: key.clone().into_bytes(),
                expected: expected.clone().map(String::into_bytes),
                value: value.clone().into_bytes(),
                observed: match outcome {
                    Outcome::Swapped(swapped, previous) => {
                        Some((*swapped, previous.clone().map(String::into_bytes)))
                    }
                    _ => None,
                },
            })),
            (Request::Scan { keys }, Outcome::Pairs(pairs)) => {
                for key in keys {
                    ops.push(op(OpKind::Get {
                        key: key.clone().into_bytes(),
                        found: pairs.get(key).cloned().map(String::into_bytes),
                    }));
                }
            }
            // A read that answered something other than a read's answer cannot happen; the
            // clients record reads only with Value or Pairs.
            _ => {}
        }
    }
    ops
}

/// Writes the history as JSON lines: one object per operation, in invocation order.
pub fn write_jsonl(records: &[Record], path: &Path) -> std::io::Result<()> {
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by_key(|r| (r.call, r.client));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for r in sorted {
        let request = match &r.request {
            Request::Put { key, value } => json!({"op": "put", "key": key, "value": value}),
            Request::Get { key } => json!({"op": "get", "key": key}),
            Request::Delete { key } => json!({"op": "delete", "key": key}),
            Request::Scan { keys } => json!({"op": "scan", "keys": keys}),
            Request::Cas {
                key,
                expected,
                value,
            } => json!({"op": "cas", "key": key, "expected": expected, "value": value}),
        };
        let outcome = match &r.outcome {
            Outcome::Written => json!({"ok": true}),
            Outcome::Value(v) => json!({"ok": true, "value": v}),
            Outcome::Pairs(p) => json!({"ok": true, "pairs": p}),
            Outcome::Swapped(swapped, previous) => {
                json!({"ok": true, "swapped": swapped, "previous": previous})
            }
            Outcome::Failed(e) => json!({"failed": e}),
            Outcome::Unknown(e) => json!({"unknown": e}),
        };
        let line = json!({
            "client": r.client,
            "call_ns": r.call,
            "ret_ns": r.ret,
            "request": request,
            "outcome": outcome,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()
}
