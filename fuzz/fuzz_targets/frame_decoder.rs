//! The transport's frame reader (`[version][u32 BE length][postcard]`) over arbitrary bytes,
//! delivered in fuzzer-chosen pieces with `Pending` in between, as a QUIC stream delivers them,
//! and decoded as each message type a stream can carry. Reading must end in a frame, a clean end
//! or a typed error; a length field above the cap must be refused before anything is allocated
//! (libFuzzer's `-malloc_limit_mb` catches a large allocation).
#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tinykv_node::message::RaftMessage;
use tinykv_transport::frame::{self, FrameError, HEADER_LEN};
use tinykv_transport::wire::{HelloReply, RpcReply, SnapshotAck, StreamHead};
use tokio::io::{AsyncRead, ReadBuf};

/// Caps the decoder is run with: tiny, typical for a test, and the production default.
const CAPS: [usize; 3] = [64, 64 * 1024, frame::DEFAULT_MAX_FRAME];

/// Hands out `data` in pieces whose sizes come from `pattern`; a zero size means "not ready
/// yet" (the reader must cope with `Pending` and a later wake-up, not assume one read fills).
struct Trickle<'a> {
    data: &'a [u8],
    pattern: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let piece = if this.pattern.is_empty() {
            usize::MAX
        } else {
            let p = this.pattern[this.step % this.pattern.len()];
            this.step += 1;
            if p == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            usize::from(p)
        };
        let n = piece.min(this.data.len()).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime needs no resources that can be missing")
    })
}

/// Reads frames until the stream ends or fails. Every decoded value must survive
/// encode → read again unchanged, and every error must be one the reader may give.
async fn read_all<T>(mut reader: Trickle<'_>, max: usize)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    // A stream can hold at most one frame per header's worth of bytes.
    let bound = reader.data.len() / HEADER_LEN + 1;
    for _ in 0..bound {
        match frame::read_frame::<_, T>(&mut reader, max).await {
            Ok(Some(value)) => {
                let bytes = frame::encode(&value, usize::MAX)
                    .expect("a value that was decoded can be encoded");
                let again: T = frame::read_required(&mut bytes.as_slice(), usize::MAX)
                    .await
                    .expect("an encoded frame reads back");
                assert_eq!(again, value);
            }
            Ok(None) => return,
            Err(FrameError::Oversized { len, max: m }) => {
                assert!(len > m && m == max, "oversized {len} with cap {m}");
                return;
            }
            Err(FrameError::Truncated { got, expected }) => {
                assert!(got < expected, "truncated {got} of {expected}");
                return;
            }
            Err(FrameError::UnknownVersion(v)) => {
                assert_ne!(v, frame::FRAME_VERSION);
                return;
            }
            Err(FrameError::Decode(_)) => return,
            Err(e @ (FrameError::Encode(_) | FrameError::Io(_))) => {
                panic!("reading from memory cannot fail with {e}")
            }
        }
    }
    panic!("more frames than the input can hold");
}

fuzz_target!(|input: &[u8]| {
    // Layout: [selector][pattern length][pattern...][stream...]
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let Some((&pattern_len, rest)) = rest.split_first() else {
        return;
    };
    let pattern_len = usize::from(pattern_len % 16).min(rest.len());
    let (pattern, data) = rest.split_at(pattern_len);
    // A pattern of only zeros would never make progress.
    let pattern = if pattern.iter().all(|&p| p == 0) {
        &[][..]
    } else {
        pattern
    };
    let reader = Trickle {
        data,
        pattern,
        step: 0,
    };
    let max = CAPS[usize::from(selector >> 4) % CAPS.len()];
    runtime().block_on(async {
        match selector % 6 {
            0 => read_all::<StreamHead>(reader, max).await,
            1 => read_all::<Vec<RaftMessage>>(reader, max).await,
            2 => read_all::<RpcReply>(reader, max).await,
            3 => read_all::<SnapshotAck>(reader, max).await,
            4 => read_all::<HelloReply>(reader, max).await,
            _ => {
                // The raw reader the snapshot path uses to drain a stream with a zero cap.
                let mut reader = reader;
                if let Ok(Some(payload)) = frame::read_raw(&mut reader, max).await {
                    assert!(payload.len() <= max);
                }
            }
        }
    });
});
