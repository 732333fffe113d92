//! What travels on each stream: the head frame that says what a stream is for, and the replies.
//!
//! Every stream begins with one [`StreamHead`] frame. Enum variants are only ever appended, since
//! postcard encodes them by position.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Application close code: the endpoint is shutting down.
pub const CLOSE_SHUTDOWN: u32 = 0;
/// Application close code: the hello named a store other than the certificate's.
pub const CLOSE_HELLO_MISMATCH: u32 = 1;
/// Application close code: no identity could be derived from the certificate.
pub const CLOSE_BAD_IDENTITY: u32 = 2;
/// Stream stop/reset code: a frame on the stream could not be read.
pub const STREAM_FRAME_ERROR: u32 = 1;
/// Stream stop/reset code: the peer is not allowed to open this kind of stream.
pub const STREAM_REFUSED: u32 = 2;

/// The first frame of every stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamHead {
    /// Bidi: a dialing node announces its store id; answered with [`HelloReply`].
    Hello { store_id: u64 },
    /// Uni: a long-lived stream of Raft message batches follows.
    Raft,
    /// Bidi: one request; answered with one [`RpcReply`] frame.
    Rpc { service: Service, body: Bytes },
    /// Bidi: `header.size` raw bytes follow; answered with one [`SnapshotAck`] frame.
    Snapshot(SnapshotHeader),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    Accepted,
}

/// Which of the node's RPC services a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Service {
    Client,
    Admin,
}

/// An RPC failure reported by the serving endpoint (as opposed to a network failure).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    #[error("the node has no RPC handler registered")]
    NoHandler,
    #[error("handler failed: {0}")]
    Handler(String),
}

pub type RpcReply = Result<Bytes, RemoteError>;

/// Describes a snapshot stream; sent before the data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub region_id: u64,
    pub index: u64,
    pub term: u64,
    /// Exact number of data bytes that follow.
    pub size: u64,
    /// crc32 (IEEE, as computed by crc32fast) of the data bytes.
    pub crc32: u32,
    /// Opaque to the transport; the node puts e.g. the Raft snapshot message here.
    pub context: Bytes,
}

/// The receiver's verdict on a snapshot stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotAck {
    Accepted,
    Rejected(SnapshotRefusal),
}

/// Why a receiver refused or failed a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SnapshotRefusal {
    #[error("receiver is at its limit of concurrent snapshots; retry later")]
    Busy,
    #[error("only store identities may send snapshots")]
    NotAStore,
    #[error("size mismatch: header says {expected} bytes, stream carried {got}")]
    SizeMismatch { expected: u64, got: u64 },
    #[error("checksum mismatch: header says {expected:#010x}, data has {got:#010x}")]
    ChecksumMismatch { expected: u32, got: u32 },
    #[error("receiver I/O error: {0}")]
    Io(String),
    #[error("refused by the receiver's fault-injection filter")]
    Filtered,
}

impl SnapshotRefusal {
    /// Whether sending the same snapshot again may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SnapshotRefusal::NotAStore)
    }
}

/// Appends postcard's varint encoding of `n` (LEB128, little-endian groups of 7 bits).
pub(crate) fn push_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_elements_decode_as_a_postcard_vec() {
        // The link writer builds batches from individually encoded messages; this relies on a
        // postcard `Vec<T>` being a varint count followed by the elements back to back.
        let items: Vec<(u64, String)> = (0..300).map(|i| (i * 1000, format!("m{i}"))).collect();
        let mut buf = Vec::new();
        push_varint(&mut buf, items.len() as u64);
        for item in &items {
            buf.extend_from_slice(&postcard::to_stdvec(item).unwrap());
        }
        assert_eq!(buf, postcard::to_stdvec(&items).unwrap());
        let back: Vec<(u64, String)> = postcard::from_bytes(&buf).unwrap();
        assert_eq!(back, items);
    }

    #[test]
    fn varint_matches_postcard_at_boundaries() {
        for n in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            push_varint(&mut buf, n);
            assert_eq!(buf, postcard::to_stdvec(&n).unwrap(), "n = {n}");
        }
    }
}
