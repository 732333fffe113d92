//! A deterministic, seeded simulation of tinykv-raft: 3- and 5-node groups of `RawNode` over
//! `MemStorage` under message loss, duplication, delay, reordering, partitions, crashes and
//! restarts, membership changes, compactions, snapshots, leader transfers and reads, with the
//! Raft safety invariants checked after every step and liveness checked once faults stop.
//!
//! It is a test binary without the libtest harness so that it can print one summary line:
//! `simulation: N seeds, M steps, V violations`. Environment:
//! - `TINYKV_SIM_SEEDS=N` runs seeds `0..N` (default 1000);
//! - `TINYKV_SIM_SEED=S` replays seed `S` alone, with a step trace on stderr when
//!   `TINYKV_SIM_TRACE=1`;
//! - `TINYKV_SIM_THREADS=T` runs seeds on `T` threads (default: the available cores);
//! - `TINYKV_SIM_COVERAGE=1` also prints, on stderr, totals of what the runs exercised.
//!
//! Every violation is printed with its seed, invariant, step and replay command, and the
//! process then exits non-zero.

mod sim;

use std::cell::RefCell;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sim::checker::{Invariant, Violation};
use sim::cluster::Coverage;
use sim::run::{Failure, current_step, run_seed};

const DEFAULT_SEEDS: u64 = 1000;

/// Violations printed in full; past this many only the count grows, so a broken core does not
/// bury the summary.
const REPORTED_VIOLATIONS: u64 = 20;

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

struct Options {
    seeds: std::ops::Range<u64>,
    trace: bool,
    coverage: bool,
    threads: usize,
}

fn env_u64(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a number, got {v:?}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

fn options() -> Result<Options, String> {
    let flag = |name: &str| matches!(std::env::var(name).as_deref(), Ok("1") | Ok("true"));
    let trace = flag("TINYKV_SIM_TRACE");
    let seeds = match env_u64("TINYKV_SIM_SEED")? {
        Some(seed) => seed..seed.saturating_add(1),
        None => 0..env_u64("TINYKV_SIM_SEEDS")?.unwrap_or(DEFAULT_SEEDS),
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = match env_u64("TINYKV_SIM_THREADS")? {
        Some(0) => return Err("TINYKV_SIM_THREADS must be at least 1".into()),
        Some(t) => usize::try_from(t).map_err(|_| "TINYKV_SIM_THREADS is too large".to_string())?,
        None => cores,
    };
    let single = seeds.end - seeds.start == 1;
    Ok(Options {
        seeds,
        trace: trace && single,
        coverage: flag("TINYKV_SIM_COVERAGE"),
        threads: if single { 1 } else { threads },
    })
}

/// Runs one seed, turning a panic into a violation at the step it happened.
fn run_guarded(seed: u64, trace: bool) -> Result<(u64, Coverage), Failure> {
    match panic::catch_unwind(AssertUnwindSafe(|| run_seed(seed, trace))) {
        Ok(outcome) => outcome,
        Err(_) => {
            let message = PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Failure {
                step: current_step(),
                violation: Violation::new(Invariant::Panic, message),
                state: String::new(),
            })
        }
    }
}

fn report(seed: u64, failure: &Failure) {
    let mut out = std::io::stdout().lock();
    // A failed write to stdout leaves nothing better to do than carry on to the exit code.
    let _ = writeln!(
        out,
        "VIOLATION seed {seed}, invariant {}, step {}: {}\n  replay: TINYKV_SIM_SEED={seed} TINYKV_SIM_TRACE=1 \
         cargo test -p tinykv-raft --release --test simulation\n{}",
        failure.violation.invariant.name(),
        failure.step,
        failure.violation.detail,
        failure.state
    );
}

fn main() -> ExitCode {
    let opts = match options() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("simulation: {e}");
            return ExitCode::from(2);
        }
    };
    let default_hook = panic::take_hook();
    let replaying = opts.seeds.end - opts.seeds.start == 1;
    panic::set_hook(Box::new(move |info| {
        PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(info.to_string()));
        if replaying {
            default_hook(info);
        }
    }));

    let next = AtomicU64::new(opts.seeds.start);
    let steps = AtomicU64::new(0);
    let violations = AtomicU64::new(0);
    let failed_seeds = Mutex::new(Vec::new());
    let coverage = Mutex::new(Coverage::default());
    std::thread::scope(|scope| {
        for _ in 0..opts.threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= opts.seeds.end {
                        break;
                    }
                    match run_guarded(seed, opts.trace) {
                        Ok((n, covered)) => {
                            steps.fetch_add(n, Ordering::Relaxed);
                            if let Ok(mut total) = coverage.lock() {
                                total.add(&covered);
                            }
                        }
                        Err(failure) => {
                            steps.fetch_add(failure.step, Ordering::Relaxed);
                            if violations.fetch_add(1, Ordering::Relaxed) < REPORTED_VIOLATIONS {
                                report(seed, &failure);
                            }
                            if let Ok(mut seeds) = failed_seeds.lock() {
                                seeds.push(seed);
                            }
                        }
                    }
                }
            });
        }
    });

    let violations = violations.into_inner();
    if opts.coverage {
        let total = coverage.into_inner().unwrap_or_default();
        eprintln!("simulation coverage of passing seeds: {total:?}");
    }
    println!(
        "simulation: {} seeds, {} steps, {violations} violations",
        opts.seeds.end - opts.seeds.start,
        steps.into_inner()
    );
    if violations == 0 {
        return ExitCode::SUCCESS;
    }
    let mut seeds = failed_seeds.into_inner().unwrap_or_default();
    seeds.sort_unstable();
    seeds.truncate(50);
    println!("failing seeds (first 50): {seeds:?}");
    ExitCode::FAILURE
}
