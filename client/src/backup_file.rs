//! The backup file: a header with what a reader needs to trust the rest, then blocks.
//!
//! ```text
//! 0      "TKVBAK\0\1"                     magic; the last byte is the layout's version
//! 8      u32 LE  header length            the header is postcard-encoded [`BackupHeader`]
//! 12     u32 LE  crc32 of the header
//! 16     header, then zeros up to HEADER_SPACE
//! HEADER_SPACE  blocks: u32 LE payload length, u32 LE crc32 of the payload, payload
//!               (a postcard-encoded [`Block`]); the last block is `Block::End`
//! ```
//!
//! The header is written last (its space is reserved first), so it can hold the counts and the
//! body's checksum; a file whose writer stopped part way has no valid header. Every block has
//! its own checksum so a reader names where a file is damaged, and the reader also checks that
//! keys rise strictly, lie inside the region block they follow, and add up to the header.

use std::io::{Read, Seek, SeekFrom, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tinykv_proto::RegionEpoch;
use tinykv_proto::api;

const MAGIC: &[u8; 7] = b"TKVBAK\0";
/// The layout's version, the magic's last byte.
pub const BACKUP_FORMAT: u8 = 1;
/// Bytes before the first block: the magic, the header and room for it to grow.
const HEADER_SPACE: u64 = 4096;
/// The largest block a reader accepts (a writer's blocks are about 1 MiB).
const MAX_BLOCK: u32 = 64 << 20;

/// What a backup holds, and the checks its blocks must pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The cluster it was taken from.
    pub cluster_id: u64,
    /// The `tinykv` version that wrote it.
    pub written_by: String,
    /// When the backup began, when every region's view was open, and when it ended,
    /// milliseconds since the Unix epoch. Every region's point in time lies between
    /// `started_ms` and `opened_ms`.
    pub started_ms: u64,
    pub opened_ms: u64,
    pub finished_ms: u64,
    pub regions: u64,
    pub keys: u64,
    /// Bytes of keys and values.
    pub data_bytes: u64,
    /// Bytes of blocks after the header space, and their crc32.
    pub body_bytes: u64,
    pub body_crc32: u32,
}

/// A region's point in time: every write applied through `applied` in `[start_key, end_key)`
/// (an empty end: no end), as region `region_id` at `epoch` held it on `store_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionPoint {
    pub region_id: u64,
    pub epoch: RegionEpoch,
    pub start_key: Bytes,
    pub end_key: Bytes,
    pub applied: u64,
    pub store_id: u64,
}

/// One block of the body. New variants go at the end: the encoding is positional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Block {
    /// The pairs that follow, up to the next `Region`, are this region's.
    Region(RegionPoint),
    /// Pairs in key order.
    Pairs(Vec<(Bytes, Bytes)>),
    /// Nothing follows.
    End,
}

/// Why a backup file cannot be written or read.
#[derive(Debug, Error)]
pub enum BackupError {
    #[error("backup file I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a tinykv backup (no TKVBAK magic at its start)")]
    NotABackup,
    #[error(
        "backup format {found} is not one this build reads (it reads format {BACKUP_FORMAT}); \
         use a newer tinykv"
    )]
    UnknownFormat { found: u8 },
    #[error("backup header is damaged: {0} (the backup did not finish, or the file is corrupt)")]
    BadHeader(String),
    #[error("backup is damaged in the block at byte {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("backup is truncated at byte {offset}: {what}")]
    Truncated { offset: u64, what: String },
}

/// Writes a backup: reserve the header, append blocks, then `finish` writes the header.
pub struct BackupWriter<W: Write + Seek> {
    out: W,
    crc: crc32fast::Hasher,
    body_bytes: u64,
    regions: u64,
    keys: u64,
    data_bytes: u64,
}

impl<W: Write + Seek> BackupWriter<W> {
    pub fn new(mut out: W) -> Result<Self, BackupError> {
        out.seek(SeekFrom::Start(0))?;
        out.write_all(&[0; HEADER_SPACE as usize])?;
        Ok(BackupWriter {
            out,
            crc: crc32fast::Hasher::new(),
            body_bytes: 0,
            regions: 0,
            keys: 0,
            data_bytes: 0,
        })
    }

    pub fn region(&mut self, point: RegionPoint) -> Result<(), BackupError> {
        self.regions += 1;
        self.block(&Block::Region(point))
    }

    pub fn pairs(&mut self, pairs: Vec<(Bytes, Bytes)>) -> Result<(), BackupError> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.keys += pairs.len() as u64;
        self.data_bytes += pairs
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum::<u64>();
        self.block(&Block::Pairs(pairs))
    }

    /// Bytes of keys and values written so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    pub fn keys(&self) -> u64 {
        self.keys
    }

    fn block(&mut self, block: &Block) -> Result<(), BackupError> {
        let payload = api::encode(block);
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(&payload)?;
        self.crc.update(&head);
        self.crc.update(&payload);
        self.body_bytes += (head.len() + payload.len()) as u64;
        Ok(())
    }

    /// Ends the body and writes the header; `header`'s counts and checksum are filled in here.
    /// Returns the header and the writer (to sync and rename it).
    pub fn finish(mut self, mut header: BackupHeader) -> Result<(BackupHeader, W), BackupError> {
        self.block(&Block::End)?;
        header.regions = self.regions;
        header.keys = self.keys;
        header.data_bytes = self.data_bytes;
        header.body_bytes = self.body_bytes;
        header.body_crc32 = self.crc.clone().finalize();
        let encoded = api::encode(&header);
        if 16 + encoded.len() as u64 > HEADER_SPACE {
            return Err(BackupError::BadHeader(format!(
                "{} bytes do not fit the header space",
                encoded.len()
            )));
        }
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(MAGIC)?;
        self.out.write_all(&[BACKUP_FORMAT])?;
        self.out.write_all(&(encoded.len() as u32).to_le_bytes())?;
        self.out
            .write_all(&crc32fast::hash(&encoded).to_le_bytes())?;
        self.out.write_all(&encoded)?;
        self.out.flush()?;
        Ok((header, self.out))
    }
}

/// Reads a backup block by block, checking everything it can as it goes; the last check
/// (counts and body checksum against the header) is made when `End` is read, so a caller
/// trusts what it read only once `next` returned `None`.
pub struct BackupReader<R: Read> {
    input: R,
    header: BackupHeader,
    offset: u64,
    crc: crc32fast::Hasher,
    region: Option<RegionPoint>,
    last_key: Option<Bytes>,
    regions: u64,
    keys: u64,
    data_bytes: u64,
    ended: bool,
}

impl<R: Read> BackupReader<R> {
    pub fn open(mut input: R) -> Result<Self, BackupError> {
        let mut space = vec![0u8; HEADER_SPACE as usize];
        let got = read_full(&mut input, &mut space)?;
        if got < 8 || &space[..7] != MAGIC {
            return Err(BackupError::NotABackup);
        }
        if space[7] != BACKUP_FORMAT {
            return Err(BackupError::UnknownFormat { found: space[7] });
        }
        if got < space.len() {
            return Err(BackupError::Truncated {
                offset: got as u64,
                what: "inside the header".into(),
            });
        }
        let len = u32::from_le_bytes([space[8], space[9], space[10], space[11]]) as usize;
        let crc = u32::from_le_bytes([space[12], space[13], space[14], space[15]]);
        let encoded = space
            .get(16..16 + len)
            .filter(|_| len > 0)
            .ok_or_else(|| BackupError::BadHeader(format!("a header length of {len}")))?;
        if crc32fast::hash(encoded) != crc {
            return Err(BackupError::BadHeader("its checksum does not match".into()));
        }
        let header: BackupHeader = api::decode("backup header", encoded)
            .map_err(|e| BackupError::BadHeader(e.to_string()))?;
        Ok(BackupReader {
            input,
            header,
            offset: HEADER_SPACE,
            crc: crc32fast::Hasher::new(),
            region: None,
            last_key: None,
            regions: 0,
            keys: 0,
            data_bytes: 0,
            ended: false,
        })
    }

    pub fn header(&self) -> &BackupHeader {
        &self.header
    }

    /// Bytes read so far, the header space included.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next region or pairs; `None` after the last block, once every check passed.
    pub fn next_block(&mut self) -> Result<Option<Block>, BackupError> {
        if self.ended {
            return Ok(None);
        }
        let at = self.offset;
        let mut head = [0u8; 8];
        if read_full(&mut self.input, &mut head)? < head.len() {
            return Err(BackupError::Truncated {
                offset: at,
                what: "the file ends before its last block".into(),
            });
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let corrupt = |what: String| BackupError::Corrupt { offset: at, what };
        if len > MAX_BLOCK {
            return Err(corrupt(format!("a block length of {len} bytes")));
        }
        let mut payload = vec![0u8; len as usize];
        if read_full(&mut self.input, &mut payload)? < payload.len() {
            return Err(BackupError::Truncated {
                offset: at,
                what: format!("inside a block of {len} bytes"),
            });
        }
        if crc32fast::hash(&payload) != crc {
            return Err(corrupt("the block's checksum does not match".into()));
        }
        self.crc.update(&head);
        self.crc.update(&payload);
        self.offset += (head.len() + payload.len()) as u64;
        let block: Block =
            api::decode("backup block", &payload).map_err(|e| corrupt(e.to_string()))?;
        match &block {
            Block::Region(point) => {
                if let Some(prev) = &self.region
                    && (prev.end_key.is_empty() || prev.end_key > point.start_key)
                {
                    return Err(corrupt(format!(
                        "region {} overlaps region {} before it",
                        point.region_id, prev.region_id
                    )));
                }
                self.regions += 1;
                self.region = Some(point.clone());
            }
            Block::Pairs(pairs) => {
                let Some(region) = &self.region else {
                    return Err(corrupt("pairs before any region".into()));
                };
                for (key, value) in pairs {
                    if self.last_key.as_ref().is_some_and(|last| last >= key) {
                        return Err(corrupt(format!("key {key:?} is out of order")));
                    }
                    if key < &region.start_key
                        || (!region.end_key.is_empty() && key >= &region.end_key)
                    {
                        return Err(corrupt(format!(
                            "key {key:?} lies outside region {}",
                            region.region_id
                        )));
                    }
                    self.data_bytes += (key.len() + value.len()) as u64;
                    self.last_key = Some(key.clone());
                }
                self.keys += pairs.len() as u64;
            }
            Block::End => {
                self.finish_checks(at)?;
                self.ended = true;
                return Ok(None);
            }
        }
        Ok(Some(block))
    }

    fn finish_checks(&mut self, at: u64) -> Result<(), BackupError> {
        let h = &self.header;
        let body = self.offset - HEADER_SPACE;
        let mismatch = |what: &str, header: u64, found: u64| BackupError::Corrupt {
            offset: at,
            what: format!("the header says {header} {what}, the blocks hold {found}"),
        };
        if body != h.body_bytes {
            return Err(mismatch("body bytes", h.body_bytes, body));
        }
        if self.crc.clone().finalize() != h.body_crc32 {
            return Err(BackupError::Corrupt {
                offset: at,
                what: "the body's checksum does not match the header's".into(),
            });
        }
        if self.regions != h.regions {
            return Err(mismatch("regions", h.regions, self.regions));
        }
        if self.keys != h.keys {
            return Err(mismatch("keys", h.keys, self.keys));
        }
        if self.data_bytes != h.data_bytes {
            return Err(mismatch("data bytes", h.data_bytes, self.data_bytes));
        }
        let mut extra = [0u8; 1];
        if read_full(&mut self.input, &mut extra)? > 0 {
            return Err(BackupError::Corrupt {
                offset: self.offset,
                what: "bytes follow the last block".into(),
            });
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the input ends; how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn point(id: u64, start: &'static str, end: &'static str) -> RegionPoint {
        RegionPoint {
            region_id: id,
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            start_key: Bytes::from_static(start.as_bytes()),
            end_key: Bytes::from_static(end.as_bytes()),
            applied: 7,
            store_id: 1,
        }
    }

    fn pair(k: &'static str, v: &'static str) -> (Bytes, Bytes) {
        (
            Bytes::from_static(k.as_bytes()),
            Bytes::from_static(v.as_bytes()),
        )
    }

    fn sample() -> Vec<u8> {
        let mut w = BackupWriter::new(Cursor::new(Vec::new())).unwrap();
        w.region(point(1, "", "m")).unwrap();
        w.pairs(vec![pair("a", "1"), pair("b", "2")]).unwrap();
        w.region(point(2, "m", "")).unwrap();
        w.pairs(vec![pair("m", "3")]).unwrap();
        w.pairs(vec![pair("z", "4")]).unwrap();
        let header = BackupHeader {
            cluster_id: 9,
            written_by: "test".into(),
            started_ms: 1,
            opened_ms: 2,
            finished_ms: 3,
            regions: 0,
            keys: 0,
            data_bytes: 0,
            body_bytes: 0,
            body_crc32: 0,
        };
        let (header, out) = w.finish(header).unwrap();
        assert_eq!((header.regions, header.keys, header.data_bytes), (2, 4, 8));
        out.into_inner()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Block>, BackupError> {
        let mut r = BackupReader::open(Cursor::new(bytes))?;
        let mut out = Vec::new();
        while let Some(b) = r.next_block()? {
            out.push(b);
        }
        Ok(out)
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let bytes = sample();
        let blocks = read_all(&bytes).unwrap();
        assert_eq!(blocks.len(), 5);
        assert_eq!(blocks[0], Block::Region(point(1, "", "m")));
        assert_eq!(blocks[4], Block::Pairs(vec![pair("z", "4")]));
        let r = BackupReader::open(Cursor::new(&bytes)).unwrap();
        assert_eq!(r.header().cluster_id, 9);
    }

    #[test]
    fn every_single_flipped_byte_or_truncation_is_refused() {
        let bytes = sample();
        // The header space's padding is not read; every other byte matters.
        let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        let meaningful = (0..16 + header_len).chain(HEADER_SPACE as usize..bytes.len());
        for i in meaningful {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(read_all(&bad).is_err(), "a flipped byte {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(
                read_all(&bytes[..len]).is_err(),
                "a file cut at {len} bytes went unnoticed"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let bytes = sample();
        assert!(matches!(read_all(b"hello"), Err(BackupError::NotABackup)));
        let mut newer = bytes.clone();
        newer[7] = 9;
        let err = read_all(&newer).unwrap_err();
        assert!(err.to_string().contains("format 9"), "{err}");
        let cut = read_all(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(matches!(cut, BackupError::Truncated { .. }), "{cut}");
        let mut flipped = bytes.clone();
        // Inside the first block's payload.
        flipped[HEADER_SPACE as usize + 10] ^= 1;
        let err = read_all(&flipped).unwrap_err();
        assert!(
            err.to_string().contains("damaged in the block at byte"),
            "{err}"
        );
    }
}
