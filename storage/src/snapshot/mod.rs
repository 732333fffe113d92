//! Region snapshots as files: built from one consistent view of a region, streamed in chunks,
//! verified on receipt, and applied with a crash-safe `Applying` state.
//!
//! Files live in the engines' snapshot directory: `gen_<region>_<term>_<index>.snap` for the
//! ones this node built, `rev_<region>_<term>_<index>.snap` for received ones. A file is
//! written under a `.tmp` name and renamed once complete and synced, so a final name always
//! holds a whole file.

pub(crate) mod apply;
pub(crate) mod build;
pub(crate) mod format;
pub(crate) mod recovery;
pub(crate) mod transfer;
pub(crate) mod worker;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::records::Region;

/// A snapshot file on disk, as built or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub size: u64,
    /// crc32 of the file's bytes.
    pub checksum: u32,
    pub region: Region,
    pub index: u64,
    pub term: u64,
}

impl SnapshotFile {
    /// The small record carried in `raft::Snapshot::data` in place of the region's data.
    pub fn descriptor(&self) -> SnapshotDescriptor {
        SnapshotDescriptor {
            region: self.region.clone(),
            index: self.index,
            term: self.term,
            file_name: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            size: self.size,
            checksum: self.checksum,
        }
    }
}

/// What a Raft snapshot message says about the file that goes with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDescriptor {
    pub region: Region,
    pub index: u64,
    pub term: u64,
    /// The name on the sender's side, for logs; the receiver picks its own.
    pub file_name: String,
    pub size: u64,
    pub checksum: u32,
}

impl SnapshotDescriptor {
    pub fn encode(&self) -> Bytes {
        Bytes::from(crate::records::encode_value(self))
    }

    /// Decodes `raft::Snapshot::data`; an error, never a panic, on bytes from the network.
    pub fn decode(data: &[u8]) -> Result<SnapshotDescriptor> {
        crate::records::decode_exact(data).map_err(|problem| {
            StorageError::InvalidRequest(format!("snapshot descriptor: {problem}"))
        })
    }
}

/// The name of a snapshot file this node builds.
pub fn generated_path(snap_dir: &Path, region_id: u64, term: u64, index: u64) -> PathBuf {
    snap_dir.join(format!("gen_{region_id}_{term}_{index}.snap"))
}

/// The name of a snapshot file this node receives.
pub fn received_path(snap_dir: &Path, region_id: u64, term: u64, index: u64) -> PathBuf {
    snap_dir.join(format!("rev_{region_id}_{term}_{index}.snap"))
}

/// The file to apply for a region's snapshot at `(term, index)`: a received one, else one
/// this node built itself.
pub(crate) fn find_file(snap_dir: &Path, region_id: u64, term: u64, index: u64) -> Option<PathBuf> {
    [
        received_path(snap_dir, region_id, term, index),
        generated_path(snap_dir, region_id, term, index),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Renames a completed `.tmp` file into place and syncs the directory so the name survives.
pub(crate) fn publish(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| StorageError::io(path, e))?;
    if let Some(dir) = path.parent() {
        let d = std::fs::File::open(dir).map_err(|e| StorageError::io(dir, e))?;
        d.sync_all().map_err(|e| StorageError::io(dir, e))?;
    }
    Ok(())
}

/// Checks a snapshot file end to end (trailer checksum, header) and describes it.
pub fn inspect_snapshot_file(path: &Path) -> Result<SnapshotFile> {
    let check = format::verify_file(path)?;
    let (_, header) = format::SnapshotFileReader::open(path)?;
    Ok(SnapshotFile {
        path: path.to_path_buf(),
        size: check.size,
        checksum: check.checksum,
        region: header.region,
        index: header.index,
        term: header.term,
    })
}
