//! The raw-UDP baseline: the same fan-out with none of the WebRTC work. One sender socket sends
//! the same datagram to N loopback sockets, batched with `sendmmsg(2)` (or one `send_to` per
//! datagram, for comparison), no crypto, no RTP state. A drain thread reads the receivers as
//! the viewers would. The sender thread's CPU time per datagram is the practical floor for an
//! SFU's CPU per delivered packet on this machine.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::procfs::thread_cpu;

/// How the baseline sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `sendmmsg` with up to `batch` datagrams (each to its own destination) per call.
    Sendmmsg {
        /// Datagrams per system call.
        batch: usize,
    },
    /// One `send_to` per datagram.
    SendTo,
}

/// A measured baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Result {
    /// How it sent.
    pub mode: Mode,
    /// Destination sockets.
    pub sockets: usize,
    /// Datagram size, bytes.
    pub datagram_bytes: usize,
    /// Datagrams sent.
    pub packets: u64,
    /// Datagrams the drain thread read (the rest were dropped by full receive buffers).
    pub received: u64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Sender thread CPU time, seconds.
    pub cpu_s: f64,
    /// Sender CPU per datagram, nanoseconds.
    pub cpu_ns_per_packet: f64,
    /// Datagrams per second of sender CPU.
    pub packets_per_cpu_second: f64,
}

/// N receivers, one sender, an optional drain thread.
pub struct Baseline {
    sender: UdpSocket,
    /// Where the datagrams go.
    pub dests: Vec<SocketAddr>,
    _receivers: Vec<UdpSocket>,
    addrs: Vec<libc::sockaddr_in>,
    payload: Vec<u8>,
    drain: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    received: Arc<AtomicU64>,
}

impl Baseline {
    /// Bind `sockets` receivers on 127.0.0.1 and a sender; `drain` starts a thread that reads
    /// every receiver.
    pub fn new(sockets: usize, datagram_bytes: usize, drain: bool) -> io::Result<Baseline> {
        let mut receivers = Vec::with_capacity(sockets);
        let mut dests = Vec::with_capacity(sockets);
        for _ in 0..sockets {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            s.set_nonblocking(true)?;
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(1 << 20);
            dests.push(s.local_addr()?);
            receivers.push(s);
        }
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        // Same socket buffer as a hawker shard.
        let _ = socket2::SockRef::from(&sender).set_send_buffer_size(8 << 20);
        let addrs = dests
            .iter()
            .map(|d| {
                let SocketAddr::V4(v4) = d else {
                    unreachable!("bound to 127.0.0.1")
                };
                libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                }
            })
            .collect();
        let payload: Vec<u8> = (0..datagram_bytes).map(|i| (i * 7 + 3) as u8).collect();
        let received = Arc::new(AtomicU64::new(0));
        let drain = if drain {
            let stop = Arc::new(AtomicBool::new(false));
            let socks: Vec<UdpSocket> = receivers
                .iter()
                .map(|s| s.try_clone())
                .collect::<io::Result<_>>()?;
            let (st, rc) = (stop.clone(), received.clone());
            let t = std::thread::Builder::new()
                .name("baseline-drain".into())
                .spawn(move || drain_loop(socks, st, rc))?;
            Some((stop, t))
        } else {
            None
        };
        Ok(Baseline {
            sender,
            dests,
            _receivers: receivers,
            addrs,
            payload,
            drain,
            received,
        })
    }

    /// Datagrams read by the drain thread so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Send the datagram once to every destination with `sendmmsg`, `batch` per call.
    /// Returns the number sent.
    pub fn round_sendmmsg(&mut self, batch: usize) -> usize {
        let batch = batch.clamp(1, 1024);
        let fd = self.sender.as_raw_fd();
        let mut iov = libc::iovec {
            iov_base: self.payload.as_ptr() as *mut libc::c_void,
            iov_len: self.payload.len(),
        };
        let mut sent = 0;
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(batch);
        for chunk in self.addrs.chunks_mut(batch) {
            msgs.clear();
            for a in chunk.iter_mut() {
                // SAFETY: all-zero is a valid mmsghdr; pointers stay valid for the call.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = a as *mut libc::sockaddr_in as *mut libc::c_void;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = &mut iov;
                m.msg_hdr.msg_iovlen = 1;
                msgs.push(m);
            }
            let mut off = 0;
            while off < msgs.len() {
                // SAFETY: msgs[off..] are initialised mmsghdrs pointing at live buffers.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        msgs.as_mut_ptr().add(off),
                        (msgs.len() - off) as libc::c_uint,
                        0,
                    )
                };
                if n <= 0 {
                    // Skip the datagram that failed (full buffer or other error).
                    off += 1;
                    continue;
                }
                off += n as usize;
                sent += n as usize;
            }
        }
        sent
    }

    /// Send the datagram once to every destination, one `send_to` each.
    pub fn round_send_to(&mut self) -> usize {
        let mut sent = 0;
        for d in &self.dests {
            if self.sender.send_to(&self.payload, d).is_ok() {
                sent += 1;
            }
        }
        sent
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some((stop, t)) = self.drain.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
    }
}

fn drain_loop(socks: Vec<UdpSocket>, stop: Arc<AtomicBool>, received: Arc<AtomicU64>) {
    let Ok(mut poll) = mio::Poll::new() else {
        return;
    };
    let mut socks: Vec<mio::net::UdpSocket> = socks
        .into_iter()
        .map(mio::net::UdpSocket::from_std)
        .collect();
    for (i, s) in socks.iter_mut().enumerate() {
        let _ = poll
            .registry()
            .register(s, mio::Token(i), mio::Interest::READABLE);
    }
    let mut events = mio::Events::with_capacity(1024);
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(20)))
            .is_err()
        {
            continue;
        }
        let mut n = 0;
        for ev in events.iter() {
            let s = &socks[ev.token().0];
            while s.recv_from(&mut buf).is_ok() {
                n += 1;
            }
        }
        received.fetch_add(n, Ordering::Relaxed);
    }
}

/// Fan the datagram out to `sockets` receivers for `duration`, measuring the sender's CPU.
pub fn measure(
    sockets: usize,
    datagram_bytes: usize,
    mode: Mode,
    duration: Duration,
) -> io::Result<Result> {
    let mut b = Baseline::new(sockets, datagram_bytes, true)?;
    // Warm up (page in buffers, route cache).
    for _ in 0..3 {
        match mode {
            Mode::Sendmmsg { batch } => b.round_sendmmsg(batch),
            Mode::SendTo => b.round_send_to(),
        };
    }
    std::thread::sleep(Duration::from_millis(50));
    let r0 = b.received();
    let c0 = thread_cpu();
    let t0 = Instant::now();
    let mut packets = 0u64;
    while t0.elapsed() < duration {
        packets += match mode {
            Mode::Sendmmsg { batch } => b.round_sendmmsg(batch),
            Mode::SendTo => b.round_send_to(),
        } as u64;
    }
    let cpu_s = thread_cpu() - c0;
    let wall_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    let received = b.received() - r0;
    Ok(Result {
        mode,
        sockets,
        datagram_bytes,
        packets,
        received,
        wall_s,
        cpu_s,
        cpu_ns_per_packet: cpu_s * 1e9 / packets.max(1) as f64,
        packets_per_cpu_second: packets as f64 / cpu_s.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_every_socket() {
        let mut b = Baseline::new(10, 1200, true).unwrap();
        assert_eq!(b.round_sendmmsg(4), 10);
        assert_eq!(b.round_send_to(), 10);
        let t = Instant::now();
        while b.received() < 20 && t.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(b.received(), 20);
    }
}
