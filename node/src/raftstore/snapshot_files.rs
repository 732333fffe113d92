//! Snapshot file housekeeping: received files once used, and generated files superseded.

use std::collections::BTreeMap;

use tracing::{debug, warn};

pub(super) fn remove_received(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(error = %e, path = %path.display(), "cannot remove a snapshot file");
    }
}

/// Keeps only the newest snapshot this store built for each region: an older one could only be
/// sent to a peer that would then need the newer one anyway.
pub(super) fn prune_generated_snapshots(snap_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(snap_dir) else {
        return;
    };
    let mut newest: BTreeMap<u64, (u64, std::path::PathBuf)> = BTreeMap::new();
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(parts) = name
            .strip_prefix("gen_")
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        let nums: Vec<u64> = parts.split('_').filter_map(|p| p.parse().ok()).collect();
        let [region, _term, index] = nums[..] else {
            continue;
        };
        match newest.get(&region) {
            Some((i, _)) if *i >= index => stale.push(entry.path()),
            _ => {
                if let Some((_, old)) = newest.insert(region, (index, entry.path())) {
                    stale.push(old);
                }
            }
        }
    }
    for path in stale {
        if let Err(e) = std::fs::remove_file(&path) {
            debug!(error = %e, path = %path.display(), "cannot remove an old snapshot file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_generated_snapshot_of_each_region_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "gen_1_5_100.snap",
            "gen_1_6_250.snap",
            "gen_1_6_180.snap",
            "gen_2_3_40.snap",
            "rev_1_6_300.snap",
            "notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        prune_generated_snapshots(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "gen_1_6_250.snap",
                "gen_2_3_40.snap",
                "notes.txt",
                "rev_1_6_300.snap"
            ]
        );
    }
}
