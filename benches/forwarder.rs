//! Cost of the per-viewer forwarding decision.
//!
//! Hypothesis: [`hawker::engine::forwarder::decide`] is a handful of compares and adds on a
//! 32-byte state, so it costs a few nanoseconds per packet per viewer — well under 1 % of the
//! ~3 µs budget per delivered packet (300 k packets/s per core), leaving the budget to SRTP and
//! the socket. The bench runs the decision for one packet across 1000 viewers, as a shard does.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hawker::engine::forwarder::{decide, Codec, Incoming, Packet, PtMap, SourceMap, Track, Viewer};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let pts = PtMap {
        opus: Some(111),
        vp8: Some(96),
        h264: Some(102),
    };
    let mut g = c.benchmark_group("forwarder");
    const VIEWERS: usize = 1000;
    g.throughput(Throughput::Elements(VIEWERS as u64));
    g.bench_function("decide_per_packet_1000_viewers", |b| {
        let mut viewers: Vec<Viewer> = (0..VIEWERS).map(|_| Viewer::new()).collect();
        let mut seq = 70_000u64;
        b.iter(|| {
            seq += 1;
            let p = Packet {
                track: Track::Video,
                codec: Codec::H264,
                seq,
                ts: (seq as u32).wrapping_mul(3000),
                marker: false,
                keyframe_start: seq % 60 == 1,
                layer: 0,
                vp8: None,
            };
            for v in viewers.iter_mut() {
                black_box(decide(black_box(&p), v, &pts));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("source_map_per_packet", |b| {
        let mut m = SourceMap::new(90_000);
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            black_box(m.map(&Incoming {
                session: 1,
                seq,
                ts: (seq as u32).wrapping_mul(3000),
                arrival: Duration::from_micros(seq * 5000),
            }))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
