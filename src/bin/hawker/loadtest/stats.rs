//! Counting without allocating: a log-linear histogram, a sequence-number tracker, and
//! RFC 3550 interarrival jitter.

use serde::Serialize;

/// Sub-buckets per power of two (1/32 ≈ 3 % relative precision).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values below `2 * SUB` are exact.
const LINEAR: u64 = 2 * SUB;
/// Enough buckets for values up to 2^48.
const BUCKETS: usize = (LINEAR + (48 - SUB_BITS as u64 - 1) * SUB) as usize;

/// A log-linear histogram of non-negative integers (we use microseconds), HDR-style:
/// fixed memory, O(1) record, mergeable.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    sum: u128,
    max: u64,
    min: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("max", &self.max)
            .finish()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as u64; // floor(log2 v) >= SUB_BITS + 1
    let m = v >> (e - SUB_BITS as u64); // in [SUB, 2 SUB)
    let i = LINEAR + (e - SUB_BITS as u64 - 1) * SUB + (m - SUB);
    (i as usize).min(BUCKETS - 1)
}

/// The lowest value and the width of a bucket.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, 1);
    }
    let k = i - LINEAR;
    let e = k / SUB + SUB_BITS as u64 + 1;
    let m = k % SUB + SUB;
    let shift = e - SUB_BITS as u64;
    (m << shift, 1 << shift)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            sum: 0,
            max: 0,
            min: u64::MAX,
        }
    }

    /// Record one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.total += 1;
        self.sum += v as u128;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Mean, if any value was recorded.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// Value at quantile `q` in `[0, 1]` (the middle of its bucket, clamped to min/max).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, w) = bucket_range(i);
                return Some((lo + w / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Add another histogram's counts.
    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += b;
        }
        self.total += o.total;
        self.sum += o.sum;
        self.max = self.max.max(o.max);
        self.min = self.min.min(o.min);
    }

    /// Forget everything.
    pub fn clear(&mut self) {
        if self.total == 0 {
            return;
        }
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.sum = 0;
        self.max = 0;
        self.min = u64::MAX;
    }

    /// Summary in milliseconds (values are microseconds).
    pub fn summary_ms(&self) -> Quantiles {
        let ms = |v: Option<u64>| v.map(|v| v as f64 / 1000.0);
        Quantiles {
            count: self.total,
            mean: self.mean().map(|m| m / 1000.0),
            p50: ms(self.quantile(0.50)),
            p90: ms(self.quantile(0.90)),
            p99: ms(self.quantile(0.99)),
            p999: ms(self.quantile(0.999)),
            max: ms((self.total > 0).then_some(self.max)),
        }
    }
}

/// Quantiles of a distribution, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Quantiles {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// Exact quantile of a sorted slice (nearest rank).
pub fn quantile_sorted(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Quantiles of a list of millisecond values.
pub fn quantiles_of(mut v: Vec<f64>) -> Quantiles {
    v.sort_by(|a, b| a.total_cmp(b));
    Quantiles {
        count: v.len() as u64,
        mean: (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64),
        p50: quantile_sorted(&v, 0.5),
        p90: quantile_sorted(&v, 0.9),
        p99: quantile_sorted(&v, 0.99),
        p999: quantile_sorted(&v, 0.999),
        max: v.last().copied(),
    }
}

/// Window (in packets) within which late and repaired packets are still recognised.
const WINDOW: u64 = 1024;

/// Tracks extended RTP sequence numbers of one stream: expected vs received (deduplicated),
/// so loss = expected − received after NACK repair.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    first: Option<u64>,
    max: u64,
    bits: [u64; (WINDOW / 64) as usize],
    /// Distinct packets received.
    pub received: u64,
    /// Duplicates (retransmissions of packets already received).
    pub duplicates: u64,
    /// Packets older than the window (not counted as received).
    pub too_old: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            first: None,
            max: 0,
            bits: [0; (WINDOW / 64) as usize],
            received: 0,
            duplicates: 0,
            too_old: 0,
        }
    }
}

impl SeqTracker {
    fn bit(&mut self, seq: u64) -> (&mut u64, u64) {
        let i = (seq % WINDOW) as usize;
        (&mut self.bits[i / 64], 1u64 << (i % 64))
    }

    /// Record a packet. Returns (whether it is new, how much `expected` grew).
    pub fn on_packet(&mut self, seq: u64) -> (bool, u64) {
        let Some(_) = self.first else {
            self.first = Some(seq);
            self.max = seq;
            let (w, b) = self.bit(seq);
            *w |= b;
            self.received += 1;
            return (true, 1);
        };
        if seq > self.max {
            let grow = seq - self.max;
            // Clear the bits of the skipped-over (not yet received) sequence numbers.
            let clear_from = if grow >= WINDOW {
                seq - WINDOW + 1
            } else {
                self.max + 1
            };
            for s in clear_from..=seq {
                let (w, b) = self.bit(s);
                *w &= !b;
            }
            self.max = seq;
            let (w, b) = self.bit(seq);
            *w |= b;
            self.received += 1;
            return (true, grow);
        }
        if self.max - seq >= WINDOW || Some(seq) < self.first {
            self.too_old += 1;
            return (false, 0);
        }
        let (w, b) = self.bit(seq);
        if *w & b != 0 {
            self.duplicates += 1;
            (false, 0)
        } else {
            *w |= b;
            self.received += 1;
            (true, 0)
        }
    }

    /// Packets expected so far (first to highest seen).
    pub fn expected(&self) -> u64 {
        self.first.map(|f| self.max - f + 1).unwrap_or(0)
    }

    /// Packets never received.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

/// RFC 3550 §6.4.1 interarrival jitter, computed on the transit time (arrival − the send time
/// the publisher embedded), in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Jitter {
    last_transit: Option<i64>,
    j: f64,
}

impl Jitter {
    /// Record one packet's transit time.
    pub fn on_transit(&mut self, transit_us: i64) {
        if let Some(prev) = self.last_transit {
            let d = (transit_us - prev).abs() as f64;
            self.j += (d - self.j) / 16.0;
        }
        self.last_transit = Some(transit_us);
    }

    /// Current estimate in milliseconds.
    pub fn ms(&self) -> f64 {
        self.j / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.04, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.04, "{p99}");
        assert_eq!(h.quantile(1.0), Some(10_000));
        for i in 0..BUCKETS {
            let (lo, _) = bucket_range(i);
            assert_eq!(bucket_of(lo), i);
        }
    }

    #[test]
    fn seq_tracker_counts_gaps_and_repairs() {
        let mut t = SeqTracker::default();
        for s in [10, 11, 13, 14] {
            t.on_packet(s);
        }
        assert_eq!((t.expected(), t.received, t.lost()), (5, 4, 1));
        assert_eq!(t.on_packet(12), (true, 0)); // NACK repair
        assert_eq!(t.lost(), 0);
        assert_eq!(t.on_packet(12), (false, 0));
        assert_eq!(t.duplicates, 1);
        t.on_packet(5000);
        assert_eq!(t.lost(), 5000 - 14 - 1);
        assert_eq!(t.on_packet(15), (false, 0)); // older than the window
    }
}
