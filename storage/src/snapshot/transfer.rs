//! Moving a snapshot file between nodes: the sender reads it as chunks, the receiver writes
//! chunks to a `.tmp` file and checks size and checksum before the file takes its final name.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::snapshot::{SnapshotDescriptor, publish, received_path, tmp_path};

/// A snapshot file read as a sequence of chunks of at most `chunk_size` bytes.
pub struct SnapshotChunks {
    file: File,
    path: PathBuf,
    chunk_size: usize,
    done: bool,
}

impl SnapshotChunks {
    pub fn open(path: &Path, chunk_size: usize) -> Result<SnapshotChunks> {
        if chunk_size == 0 {
            return Err(StorageError::InvalidRequest(
                "chunk size must be positive".into(),
            ));
        }
        let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
        Ok(SnapshotChunks {
            file,
            path: path.to_path_buf(),
            chunk_size,
            done: false,
        })
    }
}

impl Iterator for SnapshotChunks {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        let mut chunk = vec![0u8; self.chunk_size];
        let mut filled = 0;
        while filled < chunk.len() {
            match self.file.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(StorageError::io(&self.path, e)));
                }
            }
        }
        if filled < chunk.len() {
            self.done = true;
        }
        if filled == 0 {
            return None;
        }
        chunk.truncate(filled);
        Some(Ok(chunk))
    }
}

/// Receives a snapshot file chunk by chunk into the snapshot directory. The partial file is
/// removed on any error and when the receiver is dropped unfinished (a broken stream).
pub struct SnapshotReceiver {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    expected_size: u64,
    expected_checksum: u32,
    written: u64,
    hasher: crc32fast::Hasher,
}

impl SnapshotReceiver {
    /// Starts receiving the file `descriptor` describes; it will be named
    /// `rev_<region>_<term>_<index>.snap` whatever the sender called it.
    pub fn create(snap_dir: &Path, descriptor: &SnapshotDescriptor) -> Result<SnapshotReceiver> {
        let path = received_path(
            snap_dir,
            descriptor.region.id,
            descriptor.term,
            descriptor.index,
        );
        let tmp = tmp_path(&path);
        let file = File::create(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
        Ok(SnapshotReceiver {
            out: Some(BufWriter::new(file)),
            tmp,
            path,
            expected_size: descriptor.size,
            expected_checksum: descriptor.checksum,
            written: 0,
            hasher: crc32fast::Hasher::new(),
        })
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.written
    }

    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        let result = self.write_inner(chunk);
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn write_inner(&mut self, chunk: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| {
            StorageError::InvalidRequest("snapshot receiver already failed".into())
        })?;
        let total = self.written + chunk.len() as u64;
        if total > self.expected_size {
            return Err(StorageError::SnapshotSizeMismatch {
                path: self.path.clone(),
                expected: self.expected_size,
                actual: total,
            });
        }
        out.write_all(chunk)
            .map_err(|e| StorageError::io(&self.tmp, e))?;
        self.hasher.update(chunk);
        self.written = total;
        Ok(())
    }

    /// Checks size and checksum, syncs and names the file. Returns its final path.
    pub fn finish(mut self) -> Result<PathBuf> {
        let result = self.finish_inner();
        if result.is_err() {
            self.abort();
        }
        result
    }

    fn finish_inner(&mut self) -> Result<PathBuf> {
        let out = self.out.take().ok_or_else(|| {
            StorageError::InvalidRequest("snapshot receiver already failed".into())
        })?;
        if self.written != self.expected_size {
            return Err(StorageError::SnapshotSizeMismatch {
                path: self.path.clone(),
                expected: self.expected_size,
                actual: self.written,
            });
        }
        let actual = self.hasher.clone().finalize();
        if actual != self.expected_checksum {
            return Err(StorageError::SnapshotChecksumMismatch {
                path: self.path.clone(),
                expected: self.expected_checksum,
                actual,
            });
        }
        let file = out
            .into_inner()
            .map_err(|e| StorageError::io(&self.tmp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StorageError::io(&self.tmp, e))?;
        drop(file);
        publish(&self.tmp, &self.path)?;
        Ok(self.path.clone())
    }

    fn abort(&mut self) {
        self.out = None;
        if let Err(e) = std::fs::remove_file(&self.tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove partial snapshot {}: {e}", self.tmp.display());
        }
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if self.out.is_some() {
            self.abort();
        }
    }
}
