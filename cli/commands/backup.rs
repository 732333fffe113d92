//! `backup save|status|restore`: a backup file of a running cluster, its check, and a new
//! cluster made from one offline.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tinykv_client::backup_file::{BackupHeader, BackupReader};
use tinykv_node::config::{Member, NodeConfig};
use tinykv_node::restore::{self, RestoreError};

use crate::args::{BackupCmd, GlobalArgs, Output};
use crate::commands::cluster::create_playground;
use crate::connect;
use crate::exit::{CliError, CliResult};
use crate::output::{Table, human_bytes, print_json};

pub async fn run(global: &GlobalArgs, cmd: BackupCmd) -> CliResult {
    match cmd {
        BackupCmd::Save { file } => save(global, &file).await,
        BackupCmd::Status { file } => status(global.output, &file),
        BackupCmd::Restore {
            file,
            dir,
            nodes,
            base_port,
            data_dir,
            store_id,
            initial_cluster,
            initial_cluster_token,
        } => {
            let target = match (dir, data_dir, store_id) {
                (_, Some(data_dir), Some(store_id)) => Target::Store {
                    data_dir,
                    store_id,
                    initial_cluster,
                    token: initial_cluster_token,
                },
                (Some(dir), None, _) => Target::Playground {
                    dir,
                    nodes,
                    base_port,
                },
                _ => {
                    return Err(CliError::usage(
                        "give --dir for a playground, or --data-dir with --store-id and \
                         --initial-cluster for one store",
                    ));
                }
            };
            restore_to(global.output, &file, target)
        }
    }
}

/// A bar on a terminal, nothing otherwise (a script reads the result, not the drawing).
fn progress_bar(total: u64, template: &str) -> Option<ProgressBar> {
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| ProgressBar::new(total))?;
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Some(bar)
}

async fn save(global: &GlobalArgs, file: &Path) -> CliResult {
    let client = connect::client(global).await?;
    // The regions' approximate sizes are only an estimate of what the bar will reach.
    let estimate: u64 = client
        .regions()
        .await
        .map(|rs| rs.iter().map(|r| r.approximate_size).sum())
        .unwrap_or(0);
    let partial = partial_path(file);
    let out = File::create(&partial).map_err(|e| io_error("create", &partial, e))?;
    let bar = progress_bar(
        estimate,
        "{spinner} {bytes}/~{total_bytes} {bytes_per_sec} {msg} [{elapsed}]",
    );
    let started = Instant::now();
    let result = client
        .backup(
            BufWriter::with_capacity(1 << 20, out),
            crate::args::BUILD,
            |p| {
                if let Some(bar) = &bar {
                    bar.set_position(p.data_bytes);
                    bar.set_message(format!(
                        "{} keys, region {}/{}",
                        p.keys, p.regions_done, p.regions
                    ));
                }
            },
        )
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (header, out) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(CliError::from(e).hint(
                "nothing was written at the backup's path; the backup can be started again",
            ));
        }
    };
    let file_out = out
        .into_inner()
        .map_err(|e| io_error("write", &partial, e.into_error()))?;
    file_out
        .sync_all()
        .map_err(|e| io_error("sync", &partial, e))?;
    std::fs::rename(&partial, file).map_err(|e| io_error("rename", &partial, e))?;
    let elapsed = started.elapsed();
    let file_bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if global.output == Output::Json {
        let mut doc = header_json(&header);
        doc["file"] = json!(file.display().to_string());
        doc["file_bytes"] = json!(file_bytes);
        doc["seconds"] = json!(elapsed.as_secs_f64());
        doc["mib_per_sec"] = json!(mib_per_sec(header.data_bytes, elapsed));
        print_json(&doc);
    } else {
        println!(
            "backed up {} keys ({}) of {} regions to {} in {:.1}s ({:.1} MiB/s)",
            header.keys,
            human_bytes(header.data_bytes),
            header.regions,
            file.display(),
            elapsed.as_secs_f64(),
            mib_per_sec(header.data_bytes, elapsed)
        );
    }
    Ok(())
}

fn status(output: Output, file: &Path) -> CliResult {
    let input = File::open(file).map_err(|e| io_error("open", file, e))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BackupReader::open(BufReader::with_capacity(1 << 20, input))
        .map_err(|e| damaged(file, e))?;
    let bar = progress_bar(total, "{bar:30} {bytes}/{total_bytes} {bytes_per_sec}");
    let mut regions = Vec::new();
    while let Some(block) = reader.next_block().map_err(|e| damaged(file, e))? {
        if let tinykv_client::backup_file::Block::Region(point) = block {
            regions.push(point);
        }
        if let Some(bar) = &bar {
            bar.set_position(reader.offset());
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let header = reader.header();
    if output == Output::Json {
        let mut doc = header_json(header);
        doc["file"] = json!(file.display().to_string());
        doc["file_bytes"] = json!(total);
        doc["verified"] = json!(true);
        doc["region_points"] = Value::Array(
            regions
                .iter()
                .map(|r| {
                    json!({
                        "region": r.region_id,
                        "start_key": crate::output::bytes_json(&r.start_key),
                        "end_key": crate::output::bytes_json(&r.end_key),
                        "version": r.epoch.version,
                        "conf_ver": r.epoch.conf_ver,
                        "applied": r.applied,
                        "store": r.store_id,
                    })
                })
                .collect(),
        );
        print_json(&doc);
        return Ok(());
    }
    let mut t = Table::new(&["FIELD", "VALUE"]);
    t.row(vec!["file".into(), file.display().to_string()]);
    t.row(vec![
        "verified".into(),
        "ok (every block's checksum, the counts and the order)".into(),
    ]);
    t.row(vec!["cluster id".into(), header.cluster_id.to_string()]);
    t.row(vec!["started".into(), utc(header.started_ms)]);
    t.row(vec![
        "point in time".into(),
        format!(
            "each region's between {} and {}",
            utc(header.started_ms),
            utc(header.opened_ms)
        ),
    ]);
    t.row(vec!["finished".into(), utc(header.finished_ms)]);
    t.row(vec![
        "written by".into(),
        format!("tinykv {}", header.written_by),
    ]);
    t.row(vec!["regions".into(), header.regions.to_string()]);
    t.row(vec!["keys".into(), header.keys.to_string()]);
    t.row(vec!["data".into(), human_bytes(header.data_bytes)]);
    t.row(vec!["file size".into(), human_bytes(total)]);
    t.print();
    Ok(())
}

enum Target {
    Playground {
        dir: PathBuf,
        nodes: u64,
        base_port: u16,
    },
    Store {
        data_dir: PathBuf,
        store_id: u64,
        initial_cluster: Vec<String>,
        token: String,
    },
}

fn restore_to(output: Output, file: &Path, target: Target) -> CliResult {
    let input = File::open(file).map_err(|e| io_error("open", file, e))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    // A playground directory this command made is removed again if the restore fails.
    let (configs, made_dir) = match &target {
        Target::Playground {
            dir,
            nodes,
            base_port,
        } => {
            let existed = dir.exists();
            let configs = create_playground(dir, *nodes, *base_port)?;
            (configs, (!existed).then(|| dir.clone()))
        }
        Target::Store {
            data_dir,
            store_id,
            initial_cluster,
            token,
        } => {
            let members = initial_cluster
                .iter()
                .map(|m| m.parse::<Member>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::usage(format!("--initial-cluster: {e}")))?;
            let config = NodeConfig {
                store_id: *store_id,
                data_dir: data_dir.clone(),
                initial_cluster: members,
                initial_cluster_token: token.clone(),
                ..NodeConfig::default()
            };
            (vec![config], None)
        }
    };
    let bar = progress_bar(total, "{bar:30} {bytes}/{total_bytes} {bytes_per_sec}");
    let started = Instant::now();
    let result = restore::restore(&configs, BufReader::with_capacity(1 << 20, input), |at| {
        if let Some(bar) = &bar {
            bar.set_position(at);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some(dir) = made_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(restore_error(file, e));
        }
    };
    let elapsed = started.elapsed();
    let header = &summary.header;
    if output == Output::Json {
        let mut doc = header_json(header);
        doc["data_dirs"] = json!(
            summary
                .data_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
        );
        doc["seconds"] = json!(elapsed.as_secs_f64());
        doc["mib_per_sec"] = json!(mib_per_sec(header.data_bytes, elapsed));
        print_json(&doc);
        return Ok(());
    }
    println!(
        "restored {} keys ({}) from {} into {} data dir{} in {:.1}s ({:.1} MiB/s)",
        header.keys,
        human_bytes(header.data_bytes),
        file.display(),
        summary.data_dirs.len(),
        if summary.data_dirs.len() == 1 {
            ""
        } else {
            "s"
        },
        elapsed.as_secs_f64(),
        mib_per_sec(header.data_bytes, elapsed)
    );
    match &target {
        Target::Playground { dir, .. } => {
            println!(
                "# start it with `tinykv cluster up --dir {}`",
                dir.display()
            )
        }
        Target::Store { data_dir, .. } => println!(
            "# start the node with `tinykv node start --config FILE` (data-dir: {}), with the \
             same initial-cluster and initial-cluster-token on every founding store",
            data_dir.display()
        ),
    }
    Ok(())
}

fn header_json(h: &BackupHeader) -> Value {
    json!({
        "cluster_id": h.cluster_id,
        "written_by": h.written_by,
        "started_ms": h.started_ms,
        "opened_ms": h.opened_ms,
        "finished_ms": h.finished_ms,
        "started": utc(h.started_ms),
        "finished": utc(h.finished_ms),
        "regions": h.regions,
        "keys": h.keys,
        "data_bytes": h.data_bytes,
    })
}

/// The file a backup is written to until it is complete.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-6)
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time.
fn utc(ms: u64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::failed(format!("cannot {what} {}: {e}", path.display()))
}

fn damaged(file: &Path, e: tinykv_client::backup_file::BackupError) -> CliError {
    CliError::failed(format!("{}: {e}", file.display()))
        .hint("this file cannot be restored; use another backup, or take a new one")
}

fn restore_error(file: &Path, e: RestoreError) -> CliError {
    match e {
        RestoreError::Backup(e) => damaged(file, e),
        RestoreError::DirExists(_)
        | RestoreError::NoInitialCluster(_)
        | RestoreError::NotAFounder(_)
        | RestoreError::Config(_) => CliError::usage(e.to_string()),
        RestoreError::Storage { .. } => CliError::failed(e.to_string()),
    }
}
