//! Raft message links: one queue and one writer task per remote store, one long-lived
//! unidirectional stream per connection, many messages per frame.
//!
//! Messages are encoded by the caller of `send` so the queue and writer work on bytes and the
//! per-message size is known before batching. A batch frame's payload is a postcard `Vec<M>`,
//! assembled from the individually encoded messages.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::endpoint::{Received, Shared, frame_error};
use crate::filter::{Direction, Traffic, Verdict};
use crate::frame::{self, FRAME_VERSION, FrameError, HEADER_LEN};
use crate::identity::Identity;
use crate::stats::Counters;
use crate::wire::{StreamHead, push_varint};

/// Why `send` did not queue a message.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("queue to the store is full; message dropped")]
    QueueFull,
    #[error("message cannot be sent: {0}")]
    Encode(#[from] FrameError),
    #[error("store is blocked by the fault-injection filter")]
    Blocked,
}

/// The sending half of a link's queue. An item is the encoded messages one `send_all` queued.
#[derive(Clone)]
pub(crate) struct LinkSender(mpsc::Sender<Vec<Vec<u8>>>);

impl LinkSender {
    pub(crate) fn push(&self, encoded: Vec<Vec<u8>>) -> Result<(), SendError> {
        self.0.try_send(encoded).map_err(|_| SendError::QueueFull)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// Encodes one message, refusing it if it could never fit in a frame.
pub(crate) fn encode_message<M: Serialize>(
    message: &M,
    max_frame: usize,
) -> Result<Vec<u8>, SendError> {
    let bytes = postcard::to_stdvec(message).map_err(FrameError::Encode)?;
    // Leave room for the batch's element count.
    if bytes.len() + 10 > max_frame {
        return Err(SendError::Encode(FrameError::Oversized {
            len: bytes.len(),
            max: max_frame,
        }));
    }
    Ok(bytes)
}

/// Creates a link's queue and the writer future that drains it.
pub(crate) fn spawn_link<M>(
    shared: Arc<Shared<M>>,
    store: u64,
) -> (LinkSender, impl Future<Output = ()> + Send + 'static)
where
    M: Send + 'static,
{
    let (tx, rx) = mpsc::channel(shared.config.peer_queue_capacity.max(1));
    (LinkSender(tx), write_loop(shared, store, rx))
}

async fn write_loop<M>(shared: Arc<Shared<M>>, store: u64, mut rx: mpsc::Receiver<Vec<Vec<u8>>>)
where
    M: Send + 'static,
{
    let max = shared.config.max_frame_size;
    let mut stream: Option<(quinn::Connection, quinn::SendStream)> = None;
    let mut backoff = shared.config.reconnect_backoff_min;
    // Messages taken off the queue and not yet written.
    let mut carry: VecDeque<Vec<u8>> = VecDeque::new();
    loop {
        if carry.is_empty() {
            match rx.recv().await {
                Some(messages) => carry.extend(messages),
                None => return,
            }
        }
        let (payload, count) = build_batch(&mut rx, &mut carry, max);

        if stream
            .as_ref()
            .is_none_or(|(conn, _)| conn.close_reason().is_some())
        {
            stream = None;
            match open_raft_stream(&shared, store).await {
                Ok(opened) => {
                    stream = Some(opened);
                    backoff = shared.config.reconnect_backoff_min;
                }
                Err(reason) => {
                    // The peer is down: queued messages are stale by the time it is back and
                    // Raft resends what matters, so they are discarded instead of piling up.
                    let mut dropped = count + carry.len();
                    carry.clear();
                    while let Ok(messages) = rx.try_recv() {
                        dropped += messages.len();
                    }
                    Counters::add(&shared.counters.dropped_unreachable, dropped as u64);
                    shared.report_unreachable(store);
                    let wait = jitter(backoff);
                    debug!(store, %reason, ?wait, dropped, "peer unreachable; backing off");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(shared.config.reconnect_backoff_max);
                    continue;
                }
            }
        }
        let Some((_, send)) = stream.as_mut() else {
            continue;
        };
        match send.write_all(&payload).await {
            Ok(()) => {
                Counters::add(&shared.counters.messages_sent, count as u64);
                Counters::add(&shared.counters.batches_sent, 1);
            }
            Err(err) => {
                debug!(store, error = %err, "write to peer failed; will reconnect");
                stream = None;
                Counters::add(&shared.counters.dropped_unreachable, count as u64);
                shared.report_unreachable(store);
            }
        }
    }
}

/// Takes the carried messages and whatever else is queued, up to one frame's worth (at least
/// one message: `encode_message` keeps each within a frame); what does not fit stays in
/// `carry` for the next frame.
fn build_batch(
    rx: &mut mpsc::Receiver<Vec<Vec<u8>>>,
    carry: &mut VecDeque<Vec<u8>>,
    max: usize,
) -> (Vec<u8>, usize) {
    let mut messages = Vec::new();
    let mut bytes = 0;
    'fill: loop {
        while let Some(next) = carry.front() {
            if !messages.is_empty() && bytes + next.len() + 10 > max {
                break 'fill;
            }
            bytes += next.len();
            messages.extend(carry.pop_front());
        }
        match rx.try_recv() {
            Ok(more) => carry.extend(more),
            Err(_) => break,
        }
    }
    let count = messages.len();
    let mut payload = Vec::with_capacity(HEADER_LEN + 10 + bytes);
    payload.extend_from_slice(&[FRAME_VERSION, 0, 0, 0, 0]);
    push_varint(&mut payload, count as u64);
    for message in &messages {
        payload.extend_from_slice(message);
    }
    // `encode_message` and the check above keep the payload within `max` (a u32).
    let len = (payload.len() - HEADER_LEN) as u32;
    payload[1..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    (payload, count)
}

fn jitter(base: Duration) -> Duration {
    // Up to +50% so that nodes restarting together do not redial in lockstep.
    let factor = 1.0 + rand::rng().random::<f64>() * 0.5;
    base.mul_f64(factor)
}

async fn open_raft_stream<M>(
    shared: &Shared<M>,
    store: u64,
) -> Result<(quinn::Connection, quinn::SendStream), String> {
    let conn = shared
        .connect_store(store)
        .await
        .map_err(|e| e.to_string())?;
    let mut send = conn.open_uni().await.map_err(|e| e.to_string())?;
    frame::write_frame(&mut send, &StreamHead::Raft, shared.config.max_frame_size)
        .await
        .map_err(|e| e.to_string())?;
    Ok((conn, send))
}

/// Reads batch frames from a Raft stream and delivers each frame's messages to the node together.
pub(crate) async fn receive<M>(
    shared: &Arc<Shared<M>>,
    identity: &Identity,
    from: u64,
    mut recv: quinn::RecvStream,
) where
    M: DeserializeOwned + Send + 'static,
{
    let max = shared.config.max_frame_size;
    loop {
        let batch: Vec<M> = match frame::read_frame(&mut recv, max).await {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(FrameError::Io(err)) => {
                debug!(%identity, error = %err, "Raft stream ended");
                return;
            }
            Err(err) => return frame_error(shared, identity, &mut recv, &err),
        };
        let mut passed = Vec::with_capacity(batch.len());
        for message in batch {
            match shared
                .filter
                .check(Direction::Incoming, Traffic::Raft, from)
            {
                Verdict::Pass => passed.push(Received {
                    from_store: from,
                    message,
                }),
                Verdict::Drop | Verdict::Block => {
                    shared.counters.event(&shared.counters.dropped_by_filter);
                }
                Verdict::Delay(delay) => {
                    let later = shared.clone();
                    shared.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let delayed = vec![Received {
                            from_store: from,
                            message,
                        }];
                        if later.inbox.send(delayed).await.is_ok() {
                            Counters::add(&later.counters.messages_received, 1);
                        }
                    });
                }
            }
        }
        if passed.is_empty() {
            continue;
        }
        let count = passed.len() as u64;
        if shared.inbox.send(passed).await.is_err() {
            warn!("node stopped receiving Raft messages; closing stream");
            return;
        }
        Counters::add(&shared.counters.messages_received, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_is_a_postcard_vec_and_respects_the_frame_limit() {
        let (tx, mut rx) = mpsc::channel(16);
        let messages: Vec<(u64, String)> = (0..5).map(|i| (i, "x".repeat(30))).collect();
        let encoded: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| encode_message(m, 100).unwrap())
            .collect();
        // One queue item of three messages, then two items of one.
        tx.try_send(encoded[..3].to_vec()).unwrap();
        for e in &encoded[3..] {
            tx.try_send(vec![e.clone()]).unwrap();
        }
        let mut carry = VecDeque::new();
        let (payload, count) = build_batch(&mut rx, &mut carry, 100);
        assert_eq!(
            count, 2,
            "two 32-byte messages fit in 100 bytes with headroom, three do not"
        );
        assert_eq!(
            carry.len(),
            1,
            "the rest of the first item waits for the next frame"
        );
        let back: Option<Vec<(u64, String)>> = frame::read_frame(&mut payload.as_slice(), 100)
            .await
            .unwrap();
        assert_eq!(back.unwrap(), messages[..2].to_vec());
        // The next frame starts with what was carried and takes the queue in order.
        let (payload, count) = build_batch(&mut rx, &mut carry, 100);
        assert_eq!(count, 2);
        let back: Option<Vec<(u64, String)>> = frame::read_frame(&mut payload.as_slice(), 100)
            .await
            .unwrap();
        assert_eq!(back.unwrap(), messages[2..4].to_vec());
    }

    #[test]
    fn oversized_message_is_refused_at_send() {
        let err = encode_message(&vec![0u8; 200], 100).unwrap_err();
        assert!(matches!(
            err,
            SendError::Encode(FrameError::Oversized { .. })
        ));
    }
}
