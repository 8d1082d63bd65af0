//! The practical limit: the same 1200-byte datagram fanned out to N loopback sockets with plain
//! UDP, no WebRTC, no crypto (`hawker loadtest`'s baseline module, compiled in here). A drain thread reads the receivers,
//! as viewers would. `sendmmsg` batches of 1 / 16 / 64 datagrams (each to its own destination:
//! GSO cannot help a fan-out) against one `send_to` per datagram.
//!
//! Hypothesis (ANCHORS.md): ~600 k `send` calls/s of 1470 B on one core, `sendmmsg` ~20 % better;
//! i.e. ~1.3–1.6 µs per datagram is the floor an SFU's CPU per delivered packet is compared to.
//! On a loaded 2-core VM expect worse: the loopback path includes the receive side's softirq.
//!
//! `hawker loadtest` measures the same baseline (with as many sockets as viewers connected, by
//! thread CPU time) right after its run and reports hawker's ratio to it.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
// The load generator is part of the `hawker` binary, not the library: take its baseline
// module (and the /proc reader it uses) as source.
#[allow(dead_code, unused_imports)]
#[path = "../src/bin/hawker/loadtest/baseline.rs"]
mod baseline;
#[allow(dead_code, unused_imports)]
#[path = "../src/bin/hawker/loadtest/procfs.rs"]
mod procfs;

use baseline::Baseline;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline_udp");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for n in [100usize, 1000] {
        let mut b = Baseline::new(n, 1200, true).expect("sockets");
        g.throughput(Throughput::Elements(n as u64));
        for batch in [1usize, 16, 64] {
            g.bench_with_input(
                BenchmarkId::new(format!("sendmmsg_batch{batch}"), n),
                &n,
                |bch, _| bch.iter(|| b.round_sendmmsg(batch)),
            );
        }
        g.bench_with_input(BenchmarkId::new("send_to", n), &n, |bch, _| {
            bch.iter(|| b.round_send_to())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
