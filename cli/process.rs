//! The node processes `cluster up` starts: pid files, liveness, and stopping them politely
//! (SIGTERM, a grace period, then SIGKILL).

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a node gets to shut down after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 0)
}

/// Whether `pid` is a live (not zombie) process. On Linux it must also still be the node started
/// with `config` (its command line names the file), so a recycled pid is not mistaken for it.
pub fn is_running(pid: i32, config: &Path) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let proc_dir = Path::new("/proc").join(pid.to_string());
    if !proc_dir.exists() {
        return true;
    }
    if let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) {
        // The state follows the parenthesised command name, which may itself contain spaces.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next());
        if state == Some("Z") {
            return false;
        }
    }
    match std::fs::read(proc_dir.join("cmdline")) {
        Ok(cmdline) => {
            let want = config.as_os_str().as_encoded_bytes();
            cmdline.split(|&b| b == 0).any(|arg| arg == want)
        }
        Err(_) => true,
    }
}

pub fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: sending a signal has no memory-safety preconditions; a stale pid yields ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Sends SIGTERM to every live node, waits up to `grace` for them to exit, then SIGKILLs the
/// rest. Returns the pids that had to be killed.
pub async fn stop_all(nodes: &[(i32, &Path)], grace: Duration) -> Vec<i32> {
    let live: Vec<(i32, &Path)> = nodes
        .iter()
        .copied()
        .filter(|(pid, config)| is_running(*pid, config))
        .collect();
    for (pid, _) in &live {
        signal(*pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut killed = Vec::new();
    loop {
        let left: Vec<(i32, &Path)> = live
            .iter()
            .copied()
            .filter(|(pid, config)| is_running(*pid, config))
            .collect();
        if left.is_empty() {
            return killed;
        }
        if Instant::now() >= deadline {
            for (pid, _) in left {
                signal(pid, libc::SIGKILL);
                killed.push(pid);
            }
            return killed;
        }
        // Polling: a process that is not our child offers no exit event to wait on.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
