//! Shared by the black-box tests: running the built `tinykv` binary, free ports, and a guard that
//! kills every process a test started, even when the test fails.
#![allow(dead_code)]

pub mod history;
pub mod log_audit;
pub mod nemesis;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tinykv");

/// A finished `tinykv` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "tinykv failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `tinykv ARGS` with no client settings inherited from the environment.
pub fn tinykv(args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for var in ["TINYKV_ENDPOINTS", "TINYKV_CA", "TINYKV_CERT", "TINYKV_KEY"] {
        cmd.env_remove(var);
    }
    cmd.output().expect("run tinykv").into()
}

/// A base port whose `n` consecutive UDP ports are free right now, below Linux's ephemeral range
/// (32768 and up): a node restarted after `kill -9` must find its port again, and a port from the
/// ephemeral range can meanwhile be handed to any client socket bound to port 0.
pub fn free_base_port(n: u16) -> u16 {
    const LOW: u32 = 10_000;
    const HIGH: u32 = 32_000;
    // Different test processes start from different places; tests in one process move on
    // through a shared counter, so two never pick the same base.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = HIGH - LOW - u32::from(n);
    let seed = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..2_000 {
        let step = NEXT.fetch_add(u32::from(n) + 1, std::sync::atomic::Ordering::Relaxed);
        let base = (LOW + (seed + step) % span) as u16;
        let held: Vec<_> = (0..n)
            .filter_map(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        // Each node's status server takes TCP port + 100.
        let status: Vec<_> = (0..n)
            .filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", base + 100 + i)).ok())
            .collect();
        if held.len() == n as usize && status.len() == n as usize {
            return base;
        }
    }
    panic!("no {n} consecutive free UDP ports found below {HIGH}");
}

pub fn is_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub fn kill9(pid: i32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills, on drop, every node whose pid file lies under `dir` (`nodeI/pid`) and every pid added.
pub struct Guard {
    pub dir: PathBuf,
    pub extra: Vec<i32>,
}

impl Guard {
    pub fn new(dir: &Path) -> Guard {
        Guard {
            dir: dir.to_path_buf(),
            extra: Vec::new(),
        }
    }

    pub fn pids(&self) -> Vec<i32> {
        let mut pids = self.extra.clone();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(e.path().join("pid"))
                    && let Ok(pid) = text.trim().parse()
                {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in self.pids() {
            if pid > 0 && is_alive(pid) {
                kill9(pid);
            }
        }
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `cap`.
pub fn wait_for<T>(what: &str, cap: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + cap;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {cap:?} waiting for {what}"
        );
        // Polling: the state lives in other processes, reachable only by asking.
        std::thread::sleep(Duration::from_millis(100));
    }
}
