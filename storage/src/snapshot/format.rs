//! The snapshot file format, written and read in bounded chunks:
//!
//! ```text
//! "TKVSNAP3"                       magic, 8 bytes ("TKVSNAP1" and "TKVSNAP2" still read)
//! header_len u32 BE, header        postcard SnapshotHeader { region, index, term, cluster }
//! { 01, key_len u32 BE, key, value_len u32 BE, value }*   user keys, strictly ascending
//! 00, record_count u64 BE          end of records
//! crc32 u32 BE                     of every byte before it
//! ```
//! The trailer makes a file checkable on its own (a restart finishing an interrupted apply has
//! no descriptor); the descriptor's checksum is the crc32 of the whole file, trailer included.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::records::{IdAllocState, PlacementRecord, Region};

const MAGIC: &[u8; 8] = b"TKVSNAP3";
/// Files whose region-1 records had no placement record.
const MAGIC_V2: &[u8; 8] = b"TKVSNAP2";
/// Files of data format 1: peers without roles, no cluster records.
const MAGIC_V1: &[u8; 8] = b"TKVSNAP1";
const TAG_RECORD: u8 = 1;
const TAG_END: u8 = 0;
const TRAILER_LEN: u64 = 4;
/// I/O buffer size: memory use stays at about this much whatever the region's size.
pub(crate) const IO_CHUNK: usize = 256 * 1024;
const MAX_HEADER_LEN: u32 = 16 * 1024 * 1024;

/// Where a snapshot stands: which region (its shape at the snapshot) and which log position,
/// and for region 1 the cluster records its state machine keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub region: Region,
    pub index: u64,
    pub term: u64,
    pub cluster: ClusterRecords,
}

/// What region 1's state machine keeps besides user data (empty in other regions' snapshots):
/// a replica filled by snapshot must allocate ids where the others would.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecords {
    pub id_alloc: Option<IdAllocState>,
    pub started_stores: Vec<u64>,
    pub placement: Option<PlacementRecord>,
}

/// The header of a format-2 file: its cluster records had no placement record.
#[derive(Deserialize)]
struct HeaderV2 {
    region: Region,
    index: u64,
    term: u64,
    id_alloc: Option<IdAllocState>,
    started_stores: Vec<u64>,
}

/// The header of a format-1 file.
#[derive(Deserialize)]
struct HeaderV1 {
    region: crate::records::v1::Region,
    index: u64,
    term: u64,
}

/// Writes a snapshot file record by record.
pub(crate) struct SnapshotFileWriter {
    out: BufWriter<File>,
    path: PathBuf,
    hasher: crc32fast::Hasher,
    size: u64,
    records: u64,
    last_key: Option<Vec<u8>>,
}

impl SnapshotFileWriter {
    pub(crate) fn create(path: &Path, header: &SnapshotHeader) -> Result<SnapshotFileWriter> {
        let file = File::create(path).map_err(|e| StorageError::io(path, e))?;
        let mut w = SnapshotFileWriter {
            out: BufWriter::with_capacity(IO_CHUNK, file),
            path: path.to_path_buf(),
            hasher: crc32fast::Hasher::new(),
            size: 0,
            records: 0,
            last_key: None,
        };
        let header = crate::records::encode_value(header);
        w.write(MAGIC)?;
        w.write(&len_u32(header.len(), path)?.to_be_bytes())?;
        w.write(&header)?;
        Ok(w)
    }

    /// Appends one user pair; keys must come in strictly ascending order.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(StorageError::InvalidRequest(format!(
                "snapshot keys out of order at {}",
                crate::keys::hex(key)
            )));
        }
        let (klen, vlen) = (
            len_u32(key.len(), &self.path)?,
            len_u32(value.len(), &self.path)?,
        );
        self.write(&[TAG_RECORD])?;
        self.write(&klen.to_be_bytes())?;
        self.write(key)?;
        self.write(&vlen.to_be_bytes())?;
        self.write(value)?;
        self.records += 1;
        self.last_key = Some(key.to_vec());
        Ok(())
    }

    /// Writes the end marker and trailer and syncs the file. Returns (size, whole-file crc32).
    pub(crate) fn finish(mut self) -> Result<(u64, u32)> {
        self.write(&[TAG_END])?;
        self.write(&self.records.to_be_bytes())?;
        let body_crc = self.hasher.clone().finalize();
        self.write(&body_crc.to_be_bytes())?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| StorageError::io(&self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StorageError::io(&self.path, e))?;
        Ok((self.size, self.hasher.finalize()))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }
}

fn len_u32(len: usize, path: &Path) -> Result<u32> {
    u32::try_from(len).map_err(|_| StorageError::SnapshotCorrupt {
        path: path.to_path_buf(),
        problem: format!("a key or value of {len} bytes does not fit the format"),
    })
}

/// What a full pass over a file with a valid trailer found.
pub(crate) struct FileCheck {
    pub(crate) size: u64,
    pub(crate) checksum: u32,
}

/// Reads the whole file in chunks and checks its trailer.
pub(crate) fn verify_file(path: &Path) -> Result<FileCheck> {
    let mut file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let size = file
        .metadata()
        .map_err(|e| StorageError::io(path, e))?
        .len();
    if size < MAGIC.len() as u64 + 4 + 1 + 8 + TRAILER_LEN {
        return Err(corrupt(
            path,
            format!("{size} bytes is too short for a snapshot file"),
        ));
    }
    let body_len = size - TRAILER_LEN;
    let mut body = crc32fast::Hasher::new();
    let mut whole = crc32fast::Hasher::new();
    let mut buf = vec![0u8; IO_CHUNK];
    let mut read = 0u64;
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    loop {
        let n = file.read(&mut buf).map_err(|e| StorageError::io(path, e))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        whole.update(chunk);
        let body_part = (body_len.saturating_sub(read)).min(n as u64) as usize;
        body.update(&chunk[..body_part]);
        trailer.extend_from_slice(&chunk[body_part..]);
        read += n as u64;
    }
    if read != size || trailer.len() as u64 != TRAILER_LEN {
        return Err(corrupt(
            path,
            format!("file changed while read ({read} of {size} bytes)"),
        ));
    }
    let stored = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let actual = body.finalize();
    if stored != actual {
        return Err(StorageError::SnapshotChecksumMismatch {
            path: path.to_path_buf(),
            expected: stored,
            actual,
        });
    }
    Ok(FileCheck {
        size,
        checksum: whole.finalize(),
    })
}

/// Reads a snapshot file's header and then its records one at a time. Lengths are checked
/// against what is left of the file, so a damaged file is an error, never a huge allocation.
pub(crate) struct SnapshotFileReader {
    input: BufReader<File>,
    path: PathBuf,
    /// Bytes left before the trailer.
    remaining: u64,
    records: u64,
    done: bool,
    last_key: Option<Vec<u8>>,
}

impl SnapshotFileReader {
    pub(crate) fn open(path: &Path) -> Result<(SnapshotFileReader, SnapshotHeader)> {
        let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io(path, e))?
            .len();
        let mut r = SnapshotFileReader {
            input: BufReader::with_capacity(IO_CHUNK, file),
            path: path.to_path_buf(),
            remaining: size.saturating_sub(TRAILER_LEN),
            records: 0,
            done: false,
            last_key: None,
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC && &magic != MAGIC_V2 && &magic != MAGIC_V1 {
            return Err(corrupt(path, "not a tinykv snapshot file (bad magic)"));
        }
        let header_len = r.read_u32()?;
        if header_len > MAX_HEADER_LEN {
            return Err(corrupt(path, format!("header of {header_len} bytes")));
        }
        let header = r.read_vec(header_len)?;
        let header = if &magic == MAGIC_V1 {
            crate::records::decode_exact::<HeaderV1>(&header).map(|h| SnapshotHeader {
                region: h.region.into(),
                index: h.index,
                term: h.term,
                cluster: ClusterRecords::default(),
            })
        } else if &magic == MAGIC_V2 {
            crate::records::decode_exact::<HeaderV2>(&header).map(|h| SnapshotHeader {
                region: h.region,
                index: h.index,
                term: h.term,
                cluster: ClusterRecords {
                    id_alloc: h.id_alloc,
                    started_stores: h.started_stores,
                    placement: None,
                },
            })
        } else {
            crate::records::decode_exact::<SnapshotHeader>(&header)
        }
        .map_err(|problem| corrupt(path, format!("header: {problem}")))?;
        Ok((r, header))
    }

    /// The next user pair, or `None` after the last one.
    pub(crate) fn next_record(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.read_exact(&mut tag)?;
        match tag[0] {
            TAG_RECORD => {
                let klen = self.read_u32()?;
                let key = self.read_vec(klen)?;
                let vlen = self.read_u32()?;
                let value = self.read_vec(vlen)?;
                if self
                    .last_key
                    .as_deref()
                    .is_some_and(|last| last >= key.as_slice())
                {
                    return Err(corrupt(&self.path, "keys are not in ascending order"));
                }
                self.last_key = Some(key.clone());
                self.records += 1;
                Ok(Some((key, value)))
            }
            TAG_END => {
                let mut count = [0u8; 8];
                self.read_exact(&mut count)?;
                let count = u64::from_be_bytes(count);
                if count != self.records || self.remaining != 0 {
                    return Err(corrupt(
                        &self.path,
                        format!("end marker says {count} records, read {}", self.records),
                    ));
                }
                self.done = true;
                Ok(None)
            }
            other => Err(corrupt(&self.path, format!("unknown record tag {other}"))),
        }
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        if (buf.len() as u64) > self.remaining {
            return Err(corrupt(&self.path, "truncated record"));
        }
        self.input
            .read_exact(buf)
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.remaining -= buf.len() as u64;
        Ok(())
    }

    fn read_u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn read_vec(&mut self, len: u32) -> Result<Vec<u8>> {
        if u64::from(len) > self.remaining {
            return Err(corrupt(
                &self.path,
                format!("length {len} runs past the end"),
            ));
        }
        let mut v = vec![0u8; len as usize];
        self.read_exact(&mut v)?;
        Ok(v)
    }
}

fn corrupt(path: &Path, problem: impl Into<String>) -> StorageError {
    StorageError::SnapshotCorrupt {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            region: Region {
                id: 3,
                ..Region::default()
            },
            index: 10,
            term: 2,
            cluster: ClusterRecords {
                id_alloc: Some(IdAllocState { next_id: 40 }),
                started_stores: vec![1, 2],
                placement: Some(PlacementRecord {
                    retired: vec![crate::records::RetiredStore {
                        store_id: 2,
                        tombstone: false,
                    }],
                    paused: vec!["balance-region".into()],
                }),
            },
        }
    }

    /// A file of the second format (region 1's records without the placement record) still
    /// reads, with no placement record.
    #[test]
    fn a_second_format_file_reads_without_a_placement_record() {
        let h = header();
        let old = postcard::to_allocvec(&(
            &h.region,
            h.index,
            h.term,
            &h.cluster.id_alloc,
            &h.cluster.started_stores,
        ))
        .unwrap();
        let mut body = MAGIC_V2.to_vec();
        body.extend_from_slice(&(old.len() as u32).to_be_bytes());
        body.extend_from_slice(&old);
        body.push(TAG_END);
        body.extend_from_slice(&0u64.to_be_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.snap");
        std::fs::write(&path, &body).unwrap();
        let (mut r, read) = SnapshotFileReader::open(&path).unwrap();
        assert_eq!(read.region, h.region);
        assert_eq!(read.cluster.id_alloc, h.cluster.id_alloc);
        assert_eq!(read.cluster.started_stores, h.cluster.started_stores);
        assert_eq!(read.cluster.placement, None);
        assert_eq!(r.next_record().unwrap(), None);
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let mut w = SnapshotFileWriter::create(&path, &header()).unwrap();
        w.add(b"a", b"1").unwrap();
        w.add(b"b", &vec![7u8; IO_CHUNK * 2]).unwrap();
        assert!(w.add(b"b", b"dup").is_err());
        let (size, checksum) = w.finish().unwrap();
        let check = verify_file(&path).unwrap();
        assert_eq!((check.size, check.checksum), (size, checksum));
        assert_eq!(checksum, crc32fast::hash(&std::fs::read(&path).unwrap()));
        let (mut r, h) = SnapshotFileReader::open(&path).unwrap();
        assert_eq!(h, header());
        assert_eq!(
            r.next_record().unwrap(),
            Some((b"a".to_vec(), b"1".to_vec()))
        );
        assert_eq!(r.next_record().unwrap().unwrap().1.len(), IO_CHUNK * 2);
        assert_eq!(r.next_record().unwrap(), None);
    }

    /// A file of the first data format (written before peers had roles) still reads: a restart
    /// may finish an apply that an older build staged.
    #[test]
    fn a_first_format_file_reads_with_every_peer_a_voter() {
        let header = postcard::to_allocvec(&(
            3u64,
            Vec::<u8>::new(),
            Vec::<u8>::new(),
            (1u64, 1u64),
            vec![(1u64, 1u64), (2u64, 2u64)],
            10u64,
            2u64,
        ))
        .unwrap();
        let mut body = MAGIC_V1.to_vec();
        body.extend_from_slice(&(header.len() as u32).to_be_bytes());
        body.extend_from_slice(&header);
        body.push(TAG_RECORD);
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(b"a");
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(b"1");
        body.push(TAG_END);
        body.extend_from_slice(&1u64.to_be_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.snap");
        std::fs::write(&path, &body).unwrap();
        verify_file(&path).unwrap();
        let (mut r, h) = SnapshotFileReader::open(&path).unwrap();
        assert_eq!(h.region.id, 3);
        assert_eq!(
            h.region.peers,
            vec![
                crate::records::Peer::voter(1, 1),
                crate::records::Peer::voter(2, 2)
            ]
        );
        assert_eq!((h.index, h.term), (10, 2));
        assert_eq!(h.cluster, ClusterRecords::default());
        assert_eq!(
            r.next_record().unwrap(),
            Some((b"a".to_vec(), b"1".to_vec()))
        );
        assert_eq!(r.next_record().unwrap(), None);
    }

    #[test]
    fn damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let mut w = SnapshotFileWriter::create(&path, &header()).unwrap();
        w.add(b"a", b"1").unwrap();
        w.finish().unwrap();
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                verify_file(&path).is_err(),
                "flipped byte {i} went unnoticed"
            );
        }
        // A truncated file is refused by both passes, without panicking.
        for len in 0..good.len() {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(verify_file(&path).is_err());
            if let Ok((mut r, _)) = SnapshotFileReader::open(&path) {
                let mut outcome = Ok(Some((Vec::new(), Vec::new())));
                while let Ok(Some(_)) = outcome {
                    outcome = r.next_record();
                }
                assert!(outcome.is_err(), "truncation at {len} read as a whole file");
            }
        }
    }
}
