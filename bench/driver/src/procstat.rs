//! CPU time and resident memory of server processes, read from `/proc`.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// User plus system CPU seconds the process has used so far.
pub fn cpu_seconds(pid: i32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_cpu_ticks(&stat)
        .map(|ticks| ticks as f64 / clock_ticks_per_second())
        .ok_or_else(|| anyhow!("{path} has no utime/stime fields"))
}

/// Resident set size in KiB.
pub fn rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&status).ok_or_else(|| anyhow!("{path} has no VmRSS line"))
}

/// utime + stime in clock ticks. The command name in parentheses may itself contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Samples the summed RSS of a set of processes until stopped, and keeps the peak.
pub struct RssSampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pids: Vec<i32>, every: Duration) -> RssSampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = 0u64;
            loop {
                // A process that exited between samples contributes nothing.
                let total: u64 = pids.iter().filter_map(|&p| rss_kib(p).ok()).sum();
                peak = peak.max(total);
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return peak,
                }
            }
        });
        RssSampler { stop, task }
    }

    /// The peak summed RSS in KiB.
    pub async fn finish(self) -> u64 {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces_and_parens() {
        let stat =
            "4242 (tiny kv) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 55 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(755));
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert_eq!(parse_cpu_ticks("4242 (kv) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn vm_rss_line_is_read_in_kib() {
        let status = "Name:\ttinykv\nVmPeak:\t  900 kB\nVmRSS:\t   41236 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss(status), Some(41236));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let me = std::process::id() as i32;
        assert!(cpu_seconds(me).expect("own stat") >= 0.0);
        assert!(rss_kib(me).expect("own status") > 0);
    }
}
