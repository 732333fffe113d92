//! The UDP socket under an endpoint.

use std::net::{SocketAddr, UdpSocket};

use tracing::debug;

/// Receive buffer asked of the kernel (which caps it at `net.core.rmem_max`). The default of
/// about 200 KiB holds some 150 full-size packets: a snapshot stream overflows it whenever the
/// receiving task is descheduled for a moment, and every datagram dropped there is a loss that
/// makes the sender halve its rate.
const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Binds a UDP socket for QUIC with a larger receive buffer where the kernel allows it.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    // Best effort: a smaller buffer only costs throughput.
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(RECV_BUFFER) {
        debug!(%addr, error = %e, "cannot enlarge the UDP receive buffer");
    }
    Ok(socket)
}
