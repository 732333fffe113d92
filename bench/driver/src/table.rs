//! The Markdown comparison table: one row per workload, etcd and tinykv side by side. A workload
//! run several times (rounds of the comparison script) shows, per system, its median-QPS run
//! (that run's latencies and CPU, so the figures of a cell come from one run) and the range of
//! QPS over all runs; peak RSS is the first run's, the only one not inflated by earlier workloads.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The fields of a result line the table shows.
#[derive(Debug, Deserialize)]
struct Line {
    target: String,
    workload: Option<String>,
    ops: u64,
    errors: u64,
    qps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    server_cpu_s_per_1k_ops: Option<f64>,
    server_rss_kib_peak: Option<u64>,
}

#[derive(Default)]
struct Row {
    workload: String,
    etcd: Vec<Line>,
    tinykv: Vec<Line>,
}

/// One system's runs of a workload, summarised.
struct Cell<'a> {
    median: Option<&'a Line>,
    runs: usize,
    min_qps: f64,
    max_qps: f64,
}

impl<'a> Cell<'a> {
    /// The run with the median QPS (the lower of the two middle ones for an even count).
    fn of(runs: &'a [Line]) -> Cell<'a> {
        let mut sorted: Vec<&Line> = runs.iter().collect();
        sorted.sort_by(|a, b| a.qps.total_cmp(&b.qps));
        Cell {
            median: sorted.get(sorted.len().saturating_sub(1) / 2).copied(),
            runs: sorted.len(),
            min_qps: sorted.first().map_or(0.0, |l| l.qps),
            max_qps: sorted.last().map_or(0.0, |l| l.qps),
        }
    }

    fn range(&self) -> String {
        match self.runs {
            0 => "–".to_string(),
            1 => format!("{:.0}", self.min_qps),
            n => format!("{:.0}–{:.0} ({n} runs)", self.min_qps, self.max_qps),
        }
    }
}

pub fn render(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read results from {}", path.display()))?;
    render_lines(&text).with_context(|| format!("in {}", path.display()))
}

fn render_lines(text: &str) -> Result<String> {
    let mut rows: Vec<Row> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line =
            serde_json::from_str(raw).with_context(|| format!("line {} is not a result", n + 1))?;
        let workload = line
            .workload
            .clone()
            .with_context(|| format!("line {} has no workload label", n + 1))?;
        let row = match rows.iter().position(|r| r.workload == workload) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(Row {
                    workload,
                    ..Row::default()
                });
                let last = rows.len() - 1;
                &mut rows[last]
            }
        };
        match line.target.as_str() {
            "etcd" => row.etcd.push(line),
            "tinykv" => row.tinykv.push(line),
            other => bail!("line {} has unknown target {other:?}", n + 1),
        }
    }

    let repeated = rows.iter().any(|r| r.etcd.len() > 1 || r.tinykv.len() > 1);
    let mut out = String::new();
    out.push_str("| workload | etcd QPS | etcd p50 ms | etcd p99 ms | tinykv QPS | tinykv p50 ms | tinykv p99 ms | QPS tinykv/etcd | errors etcd/tinykv |");
    out.push_str(if repeated {
        " QPS range etcd | QPS range tinykv |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    } else {
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    });
    for row in &rows {
        let (etcd, tinykv) = (Cell::of(&row.etcd), Cell::of(&row.tinykv));
        let (e, t) = (etcd.median, tinykv.median);
        let ratio = match (e, t) {
            (Some(e), Some(t)) if e.qps > 0.0 => format!("{:.2}", t.qps / e.qps),
            _ => "–".to_string(),
        };
        let errors = format!("{}/{}", errors(&row.etcd), errors(&row.tinykv));
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.workload,
            qps(e),
            millis(e.and_then(|l| l.p50_ms)),
            millis(e.and_then(|l| l.p99_ms)),
            qps(t),
            millis(t.and_then(|l| l.p50_ms)),
            millis(t.and_then(|l| l.p99_ms)),
            ratio,
            errors,
        );
        if repeated {
            let _ = write!(out, " {} | {} |", etcd.range(), tinykv.range());
        }
        out.push('\n');
    }
    if rows
        .iter()
        .flat_map(|r| r.etcd.iter().chain(&r.tinykv))
        .any(|l| l.server_cpu_s_per_1k_ops.is_some())
    {
        out.push('\n');
        out.push_str("| workload | etcd CPU s / 1k ops | etcd peak RSS MiB | tinykv CPU s / 1k ops | tinykv peak RSS MiB |\n");
        out.push_str("|---|---:|---:|---:|---:|\n");
        for row in &rows {
            let (e, t) = (Cell::of(&row.etcd).median, Cell::of(&row.tinykv).median);
            // Peak RSS carries over from the workloads run before (memory is not handed back):
            // only the first round's figure belongs to the workload.
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                row.workload,
                cpu(e),
                rss(row.etcd.first()),
                cpu(t),
                rss(row.tinykv.first()),
            );
        }
    }
    Ok(out)
}

/// Server CPU seconds (all members summed) per thousand successful operations.
fn cpu(line: Option<&Line>) -> String {
    line.and_then(|l| l.server_cpu_s_per_1k_ops)
        .map_or_else(|| "–".to_string(), |c| format!("{c:.3}"))
}

/// Peak of the members' summed RSS.
fn rss(line: Option<&Line>) -> String {
    line.and_then(|l| l.server_rss_kib_peak)
        .map_or_else(|| "–".to_string(), |k| format!("{:.0}", k as f64 / 1024.0))
}

fn qps(line: Option<&Line>) -> String {
    match line {
        Some(l) if l.ops > 0 => format!("{:.0}", l.qps),
        Some(_) => "0".to_string(),
        None => "–".to_string(),
    }
}

fn millis(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |ms| format!("{ms:.2}"))
}

/// Errors over all runs of the workload.
fn errors(runs: &[Line]) -> String {
    if runs.is_empty() {
        return "–".to_string();
    }
    runs.iter().map(|l| l.errors).sum::<u64>().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINES: &str = r#"
{"target":"etcd","op":"put","clients":1,"value_size":100,"ops":1000,"errors":0,"qps":1000.0,"p50_ms":0.9,"p90_ms":1.0,"p99_ms":1.5,"p999_ms":2.0,"max_ms":3.0,"workload":"seq put"}
{"target":"tinykv","op":"put","clients":1,"value_size":100,"ops":1000,"errors":2,"qps":500.0,"p50_ms":1.8,"p90_ms":2.0,"p99_ms":3.25,"p999_ms":4.0,"max_ms":5.0,"workload":"seq put"}
{"target":"etcd","op":"get","clients":16,"value_size":100,"ops":0,"errors":9,"qps":0.0,"p50_ms":null,"p90_ms":null,"p99_ms":null,"p999_ms":null,"max_ms":null,"workload":"get"}
"#;

    #[test]
    fn pairs_targets_by_workload_and_computes_the_ratio() {
        let table = render_lines(LINES).expect("valid lines");
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[2],
            "| seq put | 1000 | 0.90 | 1.50 | 500 | 1.80 | 3.25 | 0.50 | 0/2 |"
        );
        assert_eq!(rows[3], "| get | 0 | – | – | – | – | – | – | 9/– |");
    }

    #[test]
    fn resource_table_appears_only_with_server_figures() {
        let with = r#"{"target":"tinykv","workload":"w","ops":2000,"errors":0,"qps":200.0,"server_cpu_s_per_1k_ops":0.5,"server_rss_kib_peak":102400}"#;
        let table = render_lines(with).expect("valid line");
        assert!(table.contains("| w | – | – | 0.500 | 100 |"), "{table}");
        assert!(!render_lines(LINES).expect("valid").contains("CPU s"));
    }

    #[test]
    fn repeated_runs_show_the_median_run_and_the_range() {
        let runs = r#"
{"target":"etcd","workload":"w","ops":100,"errors":0,"qps":100.0,"p50_ms":3.0,"p99_ms":9.0}
{"target":"tinykv","workload":"w","ops":300,"errors":1,"qps":300.0,"p50_ms":1.0,"p99_ms":4.0}
{"target":"etcd","workload":"w","ops":140,"errors":0,"qps":140.0,"p50_ms":2.0,"p99_ms":8.0}
{"target":"tinykv","workload":"w","ops":150,"errors":0,"qps":150.0,"p50_ms":2.5,"p99_ms":6.0}
{"target":"etcd","workload":"w","ops":120,"errors":2,"qps":120.0,"p50_ms":2.5,"p99_ms":7.0}
{"target":"tinykv","workload":"w","ops":260,"errors":0,"qps":260.0,"p50_ms":1.2,"p99_ms":5.0}
"#;
        let table = render_lines(runs).expect("valid lines");
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 3, "{table}");
        assert!(
            rows[0].ends_with("| QPS range etcd | QPS range tinykv |"),
            "{table}"
        );
        assert_eq!(
            rows[2],
            "| w | 120 | 2.50 | 7.00 | 260 | 1.20 | 5.00 | 2.17 | 2/1 | 100–140 (3 runs) | 150–300 (3 runs) |"
        );
    }

    #[test]
    fn repeated_runs_take_cpu_from_the_median_run_and_rss_from_the_first() {
        let runs = r#"
{"target":"tinykv","workload":"w","ops":100,"errors":0,"qps":100.0,"server_cpu_s_per_1k_ops":0.1,"server_rss_kib_peak":10240}
{"target":"tinykv","workload":"w","ops":300,"errors":0,"qps":300.0,"server_cpu_s_per_1k_ops":0.3,"server_rss_kib_peak":30720}
{"target":"tinykv","workload":"w","ops":200,"errors":0,"qps":200.0,"server_cpu_s_per_1k_ops":0.2,"server_rss_kib_peak":20480}
"#;
        let table = render_lines(runs).expect("valid lines");
        assert!(table.contains("| w | – | – | 0.200 | 10 |"), "{table}");
    }

    #[test]
    fn unlabelled_or_unknown_lines_are_refused() {
        assert!(render_lines(r#"{"target":"etcd","ops":1,"errors":0,"qps":1.0}"#).is_err());
        assert!(
            render_lines(r#"{"target":"redis","workload":"w","ops":1,"errors":0,"qps":1.0}"#)
                .is_err()
        );
        assert!(render_lines("not json").is_err());
    }
}
