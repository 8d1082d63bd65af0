//! An in-memory network for the virtual-time harness: datagrams between addresses, each host
//! behind a [`Link`] with a one-way delay, random loss and a bandwidth cap (a token bucket
//! feeding a FIFO with a bounded queueing delay), in each direction. Seeded: the same seed and
//! the same sends give the same deliveries.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One host's link to the network; applies to what it sends and to what it receives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// One-way delay.
    pub delay: Duration,
    /// Probability of losing a datagram, 0..1.
    pub loss: f64,
    /// Bandwidth cap in bits/s (`None`: unlimited).
    pub rate_bps: Option<u64>,
    /// Token bucket depth, bytes: how much may leave back to back at full speed.
    pub burst_bytes: usize,
    /// A datagram that would wait longer than this in the queue is dropped (tail drop).
    pub max_queue: Duration,
}

impl Default for Link {
    fn default() -> Link {
        Link {
            delay: Duration::from_millis(5),
            loss: 0.0,
            rate_bps: None,
            burst_bytes: 16 * 1500,
            max_queue: Duration::from_millis(300),
        }
    }
}

impl Link {
    /// A lossless link with this one-way delay and no bandwidth cap.
    pub fn with_delay(delay: Duration) -> Link {
        Link {
            delay,
            ..Link::default()
        }
    }
}

/// A token bucket in front of a FIFO: when each datagram leaves.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Option<Instant>,
    /// When the previous datagram left (FIFO: nobody overtakes).
    last_departure: Option<Instant>,
}

impl Bucket {
    fn new(link: &Link) -> Bucket {
        Bucket {
            tokens: link.burst_bytes as f64,
            at: None,
            last_departure: None,
        }
    }

    /// The departure time of `size` bytes offered at `now`, or `None` if the queue is too long.
    fn admit(&mut self, link: &Link, now: Instant, size: usize) -> Option<Instant> {
        let Some(rate) = link.rate_bps else {
            return Some(now);
        };
        let bytes_per_s = rate as f64 / 8.0;
        let start = self.last_departure.map_or(now, |d| d.max(now));
        let refill = self
            .at
            .map_or(0.0, |t| start.saturating_duration_since(t).as_secs_f64());
        let tokens = (self.tokens + refill * bytes_per_s).min(link.burst_bytes as f64);
        let need = size as f64 - tokens;
        let departure = if need <= 0.0 {
            start
        } else {
            start + Duration::from_secs_f64(need / bytes_per_s)
        };
        if departure.saturating_duration_since(now) > link.max_queue {
            return None;
        }
        self.tokens = (tokens - size as f64).max(0.0);
        self.at = Some(departure);
        self.last_departure = Some(departure);
        Some(departure)
    }
}

/// A datagram in flight.
#[derive(Debug)]
pub struct Datagram {
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// Bytes.
    pub contents: Vec<u8>,
}

/// A datagram in the arrival queue, ordered by (arrival, send order).
struct Queued {
    at: Instant,
    seq: u64,
    d: Datagram,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Queued) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Queued) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Queued) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What the network did, for assertions and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Lost at random.
    pub lost: u64,
    /// Dropped by a full queue (bandwidth cap).
    pub queue_drops: u64,
    /// Addressed to nobody.
    pub unroutable: u64,
}

/// The network.
pub struct Net {
    rng: StdRng,
    links: HashMap<SocketAddr, Link>,
    up: HashMap<SocketAddr, Bucket>,
    down: HashMap<SocketAddr, Bucket>,
    /// Blackholed hosts: whatever they send or should receive vanishes.
    cut: HashMap<SocketAddr, bool>,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    /// What happened so far.
    pub counters: Counters,
}

impl Net {
    /// An empty network whose random choices follow `seed`.
    pub fn new(seed: u64) -> Net {
        Net {
            rng: StdRng::seed_from_u64(seed),
            links: HashMap::new(),
            up: HashMap::new(),
            down: HashMap::new(),
            cut: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            counters: Counters::default(),
        }
    }

    /// Attach a host with its link (replacing an earlier one).
    pub fn attach(&mut self, addr: SocketAddr, link: Link) {
        self.up.insert(addr, Bucket::new(&link));
        self.down.insert(addr, Bucket::new(&link));
        self.links.insert(addr, link);
    }

    /// Change a host's link from now on (datagrams in flight keep their times).
    pub fn set_link(&mut self, addr: SocketAddr, link: Link) {
        self.links.insert(addr, link);
    }

    /// The link of a host.
    pub fn link(&self, addr: SocketAddr) -> Option<Link> {
        self.links.get(&addr).copied()
    }

    /// Cut a host off (true) or reconnect it (false).
    pub fn set_cut(&mut self, addr: SocketAddr, cut: bool) {
        self.cut.insert(addr, cut);
    }

    fn is_cut(&self, a: SocketAddr) -> bool {
        self.cut.get(&a).copied().unwrap_or(false)
    }

    /// Hand a datagram to the network at `now`.
    pub fn send(&mut self, now: Instant, d: Datagram) {
        self.counters.sent += 1;
        let (Some(&src), Some(&dst)) = (self.links.get(&d.source), self.links.get(&d.destination))
        else {
            self.counters.unroutable += 1;
            return;
        };
        if self.is_cut(d.source) || self.is_cut(d.destination) {
            self.counters.lost += 1;
            return;
        }
        let size = d.contents.len() + 28;
        // Loss is drawn for every datagram, so the sequence of draws does not depend on
        // which links are lossy.
        let roll: f64 = self.rng.gen();
        if roll < src.loss + dst.loss - src.loss * dst.loss {
            self.counters.lost += 1;
            return;
        }
        let Some(left) = self
            .up
            .get_mut(&d.source)
            .and_then(|b| b.admit(&src, now, size))
        else {
            self.counters.queue_drops += 1;
            return;
        };
        let at_edge = left + src.delay;
        let Some(arrive) = self
            .down
            .get_mut(&d.destination)
            .and_then(|b| b.admit(&dst, at_edge, size))
        else {
            self.counters.queue_drops += 1;
            return;
        };
        let arrive = arrive + dst.delay;
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: arrive,
            seq: self.seq,
            d,
        }));
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.at)
    }

    /// The next datagram due at or before `now`, in arrival order (ties in send order).
    pub fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        loop {
            if self.queue.peek()?.0.at > now {
                return None;
            }
            let d = self.queue.pop()?.0.d;
            if self.is_cut(d.destination) {
                self.counters.lost += 1;
                continue;
            }
            self.counters.delivered += 1;
            return Some(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn delay_and_order() {
        let t0 = Instant::now();
        let mut n = Net::new(1);
        n.attach(addr(1), Link::with_delay(Duration::from_millis(10)));
        n.attach(addr(2), Link::with_delay(Duration::from_millis(20)));
        for i in 0..3u8 {
            n.send(
                t0,
                Datagram {
                    source: addr(1),
                    destination: addr(2),
                    contents: vec![i],
                },
            );
        }
        assert_eq!(n.next_arrival(), Some(t0 + Duration::from_millis(30)));
        assert!(n.pop_due(t0 + Duration::from_millis(29)).is_none());
        let got: Vec<u8> = std::iter::from_fn(|| n.pop_due(t0 + Duration::from_millis(30)))
            .map(|d| d.contents[0])
            .collect();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn bandwidth_cap_spaces_and_drops() {
        let t0 = Instant::now();
        let mut n = Net::new(1);
        n.attach(
            addr(1),
            Link {
                delay: Duration::ZERO,
                ..Link::default()
            },
        );
        // 1 Mbit/s, one 1000-byte packet of burst, 50 ms of queue.
        let slow = Link {
            delay: Duration::ZERO,
            loss: 0.0,
            rate_bps: Some(1_000_000),
            burst_bytes: 1028,
            max_queue: Duration::from_millis(50),
        };
        n.attach(addr(2), slow);
        for _ in 0..20 {
            let d = Datagram {
                source: addr(1),
                destination: addr(2),
                contents: vec![0; 1000],
            };
            n.send(t0, d);
        }
        // 1028 bytes take 8.2 ms at 1 Mbit/s: the burst goes at once, then 6 more fit in 50 ms.
        let mut times = Vec::new();
        while let Some(t) = n.next_arrival() {
            n.pop_due(t).unwrap();
            times.push(t.duration_since(t0));
        }
        assert_eq!(times.len(), 7, "{times:?}");
        assert_eq!(n.counters.queue_drops, 13);
        assert_eq!(times[0], Duration::ZERO);
        let gap = times[2] - times[1];
        assert!(
            gap > Duration::from_micros(8100) && gap < Duration::from_micros(8300),
            "{gap:?}"
        );
    }

    #[test]
    fn loss_is_seeded() {
        let run = |seed| {
            let t0 = Instant::now();
            let mut n = Net::new(seed);
            n.attach(
                addr(1),
                Link {
                    loss: 0.3,
                    ..Link::default()
                },
            );
            n.attach(addr(2), Link::default());
            for _ in 0..1000 {
                n.send(
                    t0,
                    Datagram {
                        source: addr(1),
                        destination: addr(2),
                        contents: vec![1],
                    },
                );
            }
            n.counters
        };
        assert_eq!(run(7), run(7));
        let c = run(7);
        assert!(c.lost > 250 && c.lost < 350, "{c:?}");
    }
}
