//! Receiving with the kernel's receive timestamp (`SO_TIMESTAMPNS`), so that the forwarding
//! delay a viewer reports does not include the time the generator took to get to the datagram
//! (one generator thread drains thousands of viewers' sockets per video frame).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

/// Ask the kernel to stamp received datagrams (Linux; a no-op elsewhere).
pub fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option pointer/length.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = fd;
    Ok(())
}

/// Receive one datagram: (length, source, kernel receive time in µs since the Unix epoch).
#[cfg(all(test, target_os = "linux"))]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u64>)> {
    // SAFETY: every pointer handed to recvmsg points at a live, correctly sized buffer, and the
    // control messages are read with the CMSG_* accessors within msg_controllen.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut addr as *mut _ as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ts = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const _);
                ts = Some(t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let src = match addr.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in);
                SocketAddr::from((
                    u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(a.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let a = &*(&addr as *const _ as *const libc::sockaddr_in6);
                SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
            }
            _ => return Err(io::Error::other("datagram from an unknown address family")),
        };
        Ok((n as usize, src, ts))
    }
}

/// Datagrams per `recvmmsg` call.
pub const BATCH: usize = 16;
const BUF: usize = 2048;

/// Buffers for receiving up to [`BATCH`] datagrams per system call (`recvmmsg`).
pub struct RecvBatch {
    bufs: Vec<u8>,
    /// (length, source, kernel receive time µs) of each datagram of the last call.
    pub meta: Vec<(usize, SocketAddr, Option<u64>)>,
    #[cfg(target_os = "linux")]
    names: Vec<libc::sockaddr_storage>,
    #[cfg(target_os = "linux")]
    iovs: Vec<libc::iovec>,
    #[cfg(target_os = "linux")]
    controls: Vec<[u64; 16]>,
    #[cfg(target_os = "linux")]
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into the struct's own heap buffers.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    /// Allocate the buffers.
    pub fn new() -> RecvBatch {
        #[cfg(target_os = "linux")]
        // SAFETY: all-zero is valid for these C structs; pointers are set up in `recv_batch`.
        unsafe {
            RecvBatch {
                bufs: vec![0; BATCH * BUF],
                meta: Vec::with_capacity(BATCH),
                names: vec![std::mem::zeroed(); BATCH],
                iovs: vec![std::mem::zeroed(); BATCH],
                controls: vec![[0; 16]; BATCH],
                msgs: vec![std::mem::zeroed(); BATCH],
            }
        }
        #[cfg(not(target_os = "linux"))]
        RecvBatch {
            bufs: vec![0; BATCH * BUF],
            meta: Vec::with_capacity(BATCH),
        }
    }

    /// The payload of datagram `i` of the last call.
    pub fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i * BUF..i * BUF + self.meta[i].0]
    }
}

/// Receive up to [`BATCH`] datagrams with one `recvmmsg`; returns how many (in `b.meta`).
#[cfg(target_os = "linux")]
pub fn recv_batch(fd: RawFd, b: &mut RecvBatch) -> io::Result<usize> {
    b.meta.clear();
    // SAFETY: every pointer refers to b's buffers, which outlive the call; lengths match.
    unsafe {
        for i in 0..BATCH {
            b.iovs[i] = libc::iovec {
                iov_base: b.bufs.as_mut_ptr().add(i * BUF) as *mut libc::c_void,
                iov_len: BUF,
            };
            let m = &mut b.msgs[i];
            m.msg_len = 0;
            m.msg_hdr.msg_name = &mut b.names[i] as *mut _ as *mut libc::c_void;
            m.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut b.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = b.controls[i].as_mut_ptr() as *mut libc::c_void;
            m.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 16]>() as _;
            m.msg_hdr.msg_flags = 0;
        }
        let n = libc::recvmmsg(
            fd,
            b.msgs.as_mut_ptr(),
            BATCH as libc::c_uint,
            0,
            std::ptr::null_mut(),
        );
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for i in 0..n as usize {
            let msg = &b.msgs[i].msg_hdr;
            let mut ts = None;
            let mut c = libc::CMSG_FIRSTHDR(msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let t: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const _);
                    ts = Some(t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000);
                }
                c = libc::CMSG_NXTHDR(msg, c);
            }
            let src = sockaddr(&b.names[i])?;
            b.meta
                .push(((b.msgs[i].msg_len as usize).min(BUF), src, ts));
        }
        Ok(n as usize)
    }
}

/// Receive one datagram at a time (no `recvmmsg` on this platform).
#[cfg(not(target_os = "linux"))]
pub fn recv_batch(fd: RawFd, b: &mut RecvBatch) -> io::Result<usize> {
    b.meta.clear();
    let (n, src, ts) = recv(fd, &mut b.bufs[..BUF])?;
    b.meta.push((n, src, ts));
    Ok(1)
}

#[cfg(target_os = "linux")]
fn sockaddr(addr: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    // SAFETY: the family says which sockaddr the storage holds.
    unsafe {
        match addr.ss_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(addr as *const _ as *const libc::sockaddr_in);
                Ok(SocketAddr::from((
                    u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = &*(addr as *const _ as *const libc::sockaddr_in6);
                Ok(SocketAddr::from((
                    a.sin6_addr.s6_addr,
                    u16::from_be(a.sin6_port),
                )))
            }
            _ => Err(io::Error::other("datagram from an unknown address family")),
        }
    }
}

/// Receive one datagram (no kernel timestamp on this platform).
#[cfg(not(target_os = "linux"))]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<u64>)> {
    use std::os::fd::FromRawFd;
    let s = std::mem::ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(fd) });
    let (n, a) = s.recv_from(buf)?;
    Ok((n, a, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn receives_with_a_kernel_timestamp() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_rx_timestamps(b.as_raw_fd()).unwrap();
        let before = hawker::sim::media::wall_us();
        a.send_to(b"hello", b.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let (n, src, ts) = recv(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(src, a.local_addr().unwrap());
        let ts = ts.expect("kernel timestamp");
        assert!(
            ts + 1000 >= before && ts < before + 5_000_000,
            "{ts} vs {before}"
        );
    }
}
