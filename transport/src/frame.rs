//! Length-prefixed postcard frames: `[version: u8][length: u32 BE][postcard payload]`.
//!
//! QUIC streams are byte streams and a dropped `SendStream` finishes cleanly, so a half-written
//! message would otherwise look like a complete one; the length prefix makes a short read an
//! error. The version byte lets a future format be refused clearly instead of misparsed.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The only frame format this build speaks. 2: region peers carry their role (learners), so
/// the payloads of version 1 no longer decode; nodes of the two builds refuse each other clearly.
/// 3: routing errors carry the answering store's regions (regions split), so a client of an
/// older build is refused by version rather than misreading them.
/// 4: a store's Raft message envelope can tell a removed peer to destroy itself.
/// 5: the envelope carries a signal (tombstone, hibernate, wake up) instead of a flag.
pub const FRAME_VERSION: u8 = 5;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;
/// Default cap on one frame's payload.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Why a frame could not be read or written. Each of these ends the stream it happened on only.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated { got: usize, expected: usize },
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized { len: usize, max: usize },
    #[error("unknown frame version {0} (this build speaks {FRAME_VERSION})")]
    UnknownVersion(u8),
    #[error("undecodable frame payload: {0}")]
    Decode(postcard::Error),
    #[error("unencodable value: {0}")]
    Encode(postcard::Error),
    #[error("stream I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `value` as one complete frame.
pub fn encode<T: Serialize + ?Sized>(value: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![FRAME_VERSION, 0, 0, 0, 0];
    let mut buf =
        postcard::to_extend(value, std::mem::take(&mut buf)).map_err(FrameError::Encode)?;
    let len = buf.len() - HEADER_LEN;
    if len > max || u32::try_from(len).is_err() {
        return Err(FrameError::Oversized { len, max });
    }
    let len = len as u32;
    buf[1..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Writes one frame.
pub async fn write_frame<W, T>(writer: &mut W, value: &T, max: usize) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize + ?Sized,
{
    let buf = encode(value, max)?;
    writer.write_all(&buf).await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` means the stream ended cleanly before a new frame began.
pub async fn read_frame<R, T>(reader: &mut R, max: usize) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let Some(payload) = read_raw(reader, max).await? else {
        return Ok(None);
    };
    postcard::from_bytes(&payload)
        .map(Some)
        .map_err(FrameError::Decode)
}

/// Reads one frame that must be there: a clean end of stream is reported as truncation.
pub async fn read_required<R, T>(reader: &mut R, max: usize) -> Result<T, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    read_frame(reader, max).await?.ok_or(FrameError::Truncated {
        got: 0,
        expected: HEADER_LEN,
    })
}

/// Reads one frame's payload without decoding it.
pub async fn read_raw<R>(reader: &mut R, max: usize) -> Result<Option<Vec<u8>>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header).await?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated {
            got,
            expected: HEADER_LEN,
        });
    }
    if header[0] != FRAME_VERSION {
        return Err(FrameError::UnknownVersion(header[0]));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    // Checked before allocating so a hostile length cannot make us reserve gigabytes.
    if len > max {
        return Err(FrameError::Oversized { len, max });
    }
    let mut payload = vec![0u8; len];
    let got = read_full(reader, &mut payload).await?;
    if got < len {
        return Err(FrameError::Truncated {
            got: HEADER_LEN + got,
            expected: HEADER_LEN + len,
        });
    }
    Ok(Some(payload))
}

/// Fills `buf` unless the stream ends first; returns how many bytes were read.
pub(crate) async fn read_full<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        data: Vec<u8>,
    }

    fn sample() -> Sample {
        Sample {
            id: 7,
            name: "seven".into(),
            data: vec![1, 2, 3],
        }
    }

    #[tokio::test]
    async fn round_trip_of_several_frames() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &sample(), 1024).await.unwrap();
        write_frame(
            &mut buf,
            &Sample {
                id: 8,
                name: String::new(),
                data: vec![],
            },
            1024,
        )
        .await
        .unwrap();
        let mut r = buf.as_slice();
        assert_eq!(
            read_frame::<_, Sample>(&mut r, 1024).await.unwrap(),
            Some(sample())
        );
        assert_eq!(
            read_frame::<_, Sample>(&mut r, 1024)
                .await
                .unwrap()
                .unwrap()
                .id,
            8
        );
        assert!(
            read_frame::<_, Sample>(&mut r, 1024)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn every_truncation_point_is_a_typed_error() {
        let full = encode(&sample(), 1024).unwrap();
        for cut in 1..full.len() {
            let mut r = &full[..cut];
            let err = read_frame::<_, Sample>(&mut r, 1024).await.unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { got, .. } if got == cut),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_reading_payload() {
        let mut bytes = vec![FRAME_VERSION];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = read_frame::<_, Sample>(&mut bytes.as_slice(), 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::Oversized { len, max: 1024 } if len == u32::MAX as usize)
        );
        let big = Sample {
            id: 1,
            name: "x".repeat(2000),
            data: vec![],
        };
        assert!(matches!(
            encode(&big, 1024),
            Err(FrameError::Oversized { .. })
        ));
    }

    #[tokio::test]
    async fn unknown_version_is_refused() {
        let mut bytes = encode(&sample(), 1024).unwrap();
        bytes[0] = 9;
        let err = read_frame::<_, Sample>(&mut bytes.as_slice(), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::UnknownVersion(9)));
    }

    #[tokio::test]
    async fn garbage_payload_is_a_decode_error() {
        let mut bytes = vec![FRAME_VERSION, 0, 0, 0, 3];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<_, Sample>(&mut bytes.as_slice(), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x7137_6b76),
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = rt.block_on(read_frame::<_, Sample>(&mut bytes.as_slice(), 32));
        }

        #[test]
        fn encode_then_read_is_identity(id in 0u64.., name in ".{0,20}", data in proptest::collection::vec(0u8.., 0..100)) {
            let value = Sample { id, name, data };
            let bytes = encode(&value, 1 << 20).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let back: Option<Sample> = rt.block_on(read_frame(&mut bytes.as_slice(), 1 << 20)).unwrap();
            proptest::prop_assert_eq!(back, Some(value));
        }
    }
}
