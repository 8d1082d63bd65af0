//! Batched UDP sends: one `sendmmsg(2)` per batch of datagrams on Linux, plain `send_to`
//! elsewhere. Fan-out sends many datagrams to many destinations at once, which is exactly what
//! `sendmmsg` amortises (GSO would not help: it needs one destination per batch).

use std::net::SocketAddr;

/// Most datagrams per system call.
pub const BATCH: usize = 64;

/// Send every datagram; returns how many failed (dropped: UDP gives no guarantee either).
#[cfg(target_os = "linux")]
pub fn send_all(sock: &mio::net::UdpSocket, items: &[(SocketAddr, &[u8])]) -> usize {
    use std::os::fd::AsRawFd;

    let fd = sock.as_raw_fd();
    let mut failed = 0;
    for chunk in items.chunks(BATCH) {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, (addr, data)) in chunk.iter().enumerate() {
            let len = write_addr(addr, &mut addrs[i]);
            iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            msgs[i].msg_hdr.msg_name = &mut addrs[i] as *mut _ as *mut libc::c_void;
            msgs[i].msg_hdr.msg_namelen = len;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0usize;
        while sent < chunk.len() {
            // SAFETY: msgs[sent..len] point at live iovecs/addresses in this stack frame and
            // at the caller's buffers, which outlive the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(sent),
                    (chunk.len() - sent) as libc::c_uint,
                    0,
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The first message of the rest failed (full buffer, unreachable): skip it.
                failed += 1;
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
    failed
}

#[cfg(target_os = "linux")]
fn write_addr(addr: &SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(out as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Portable fallback: one `send_to` per datagram.
#[cfg(not(target_os = "linux"))]
pub fn send_all(sock: &mio::net::UdpSocket, items: &[(SocketAddr, &[u8])]) -> usize {
    items
        .iter()
        .filter(|(a, d)| sock.send_to(d, *a).is_err())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_batches_to_many_destinations() {
        let tx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rxs: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let payloads: Vec<Vec<u8>> = (0..150u8).map(|i| vec![i; 100]).collect();
        let items: Vec<(SocketAddr, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (rxs[i % 3].local_addr().unwrap(), p.as_slice()))
            .collect();
        assert_eq!(send_all(&tx, &items), 0);
        let mut buf = [0u8; 200];
        for (i, rx) in rxs.iter().enumerate() {
            rx.set_read_timeout(Some(std::time::Duration::from_secs(1)))
                .unwrap();
            for k in 0..50 {
                let (n, _) = rx.recv_from(&mut buf).unwrap();
                assert_eq!(n, 100);
                assert_eq!(buf[0] as usize, k * 3 + i);
            }
        }
    }
}
