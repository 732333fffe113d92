//! Free loopback ports for the playgrounds, chosen by the kernel (bind to port 0) rather than
//! guessed, so the comparison does not collide with whatever else runs on the machine.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use anyhow::{Context, Result, bail};

/// Attempts at finding `n` consecutive free UDP ports before giving up.
const RUN_ATTEMPTS: usize = 200;

/// `n` distinct free TCP ports on 127.0.0.1. All are held until all are found, so none repeats.
pub fn tcp(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a TCP port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The first of `n` consecutive UDP ports on 127.0.0.1 that are all free (tinykv's playground
/// gives node `i` the port `base + i - 1`). Ports in `avoid` are skipped.
pub fn udp_run(n: usize, avoid: &[u16]) -> Result<u16> {
    for _ in 0..RUN_ATTEMPTS {
        let first = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a UDP port")?;
        let base = first.local_addr()?.port();
        if usize::from(base) + n > usize::from(u16::MAX) + 1 {
            continue;
        }
        let mut held = vec![first];
        for offset in 1..n {
            let port = base + offset as u16;
            if avoid.contains(&port) {
                break;
            }
            match UdpSocket::bind((Ipv4Addr::LOCALHOST, port)) {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        if held.len() == n && !avoid.contains(&base) {
            return Ok(base);
        }
    }
    bail!("found no {n} consecutive free UDP ports in {RUN_ATTEMPTS} attempts")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ports_are_distinct_and_bindable() {
        let ports = tcp(6).expect("free ports");
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 6);
        for p in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).expect("port is still free");
        }
    }

    #[test]
    fn udp_run_is_consecutive_and_free() {
        let base = udp_run(3, &[]).expect("a free run");
        let _held: Vec<UdpSocket> = (0..3)
            .map(|i| UdpSocket::bind((Ipv4Addr::LOCALHOST, base + i)).expect("free"))
            .collect();
    }
}
