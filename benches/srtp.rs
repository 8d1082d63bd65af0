//! SRTP protect per profile, as str0m 0.25 does it per outgoing packet.
//!
//! str0m does not expose its SRTP context publicly (only behind the `_internal_test_exports`
//! feature), but it does expose the cipher primitives of its crypto provider
//! (`str0m::crypto::from_feature_flags().srtp_provider`) and the RFC 3711 / RFC 7714 helpers
//! (`Aes128CmSha1_80::rtp_iv`/`rtp_hmac`, `AeadAes128Gcm::rtp_iv`, `AeadAes256Gcm::rtp_iv`). This
//! bench composes them exactly as str0m's `SrtpContext::protect_rtp` does — including its output
//! `Vec` allocation and header copy — for a 1200-byte video payload and a 160-byte Opus payload.
//!
//! Which profile a session uses is negotiated in DTLS (dimpl's server order: AEAD_AES_256_GCM,
//! AEAD_AES_128_GCM, AES128_CM_SHA1_80, intersected with the client's offer); hawker cannot
//! choose it through str0m's public API. str0m↔str0m and Chrome↔hawker both end up with
//! AEAD_AES_256_GCM.
//!
//! Hypothesis (pion/srtp #196, libsrtp): the AEAD-GCM profiles cost well under 1 µs per
//! 1200-byte packet with AES-NI/PCLMUL (aws-lc-rs), AES-CM + HMAC-SHA1 several times more,
//! because HMAC-SHA1 over the whole packet has no hardware help.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use str0m::crypto::{from_feature_flags, AeadAes128Gcm, AeadAes256Gcm, Aes128CmSha1_80};

/// A 12-byte RTP header plus a one-byte-header extension block (abs-send-time, TWCC, mid),
/// as str0m writes for video.
fn header() -> Vec<u8> {
    let mut h = vec![
        0x90, 0x60, 0x12, 0x34, // V=2, X=1, PT 96, seq
        0x00, 0x01, 0x5f, 0x90, // timestamp
        0xde, 0xad, 0xbe, 0xef, // ssrc
        0xbe, 0xde, 0x00, 0x03, // one-byte extensions, 3 words
    ];
    h.extend_from_slice(&[
        0x22, 0x01, 0x02, 0x03, 0x31, 0x00, 0x07, 0x41, 0x61, 0x62, 0, 0,
    ]);
    h
}

fn bench(c: &mut Criterion) {
    let p = from_feature_flags();
    let srtp = p.srtp_provider;
    let hmac = p.sha1_hmac_provider;
    let hdr = header();
    let hlen = hdr.len();
    let mut g = c.benchmark_group("srtp_protect");
    for payload in [1200usize, 160] {
        let mut buf = hdr.clone();
        buf.extend((0..payload).map(|i| i as u8));
        g.throughput(Throughput::Bytes(buf.len() as u64));

        // AES-128-CM + HMAC-SHA1-80 (RFC 3711).
        let mut enc = srtp.aes_128_cm_sha1_80().create_cipher([7; 16], true);
        let auth_key = [9u8; 20];
        let salt = [3u8; 14];
        let mut index = 70_000u64;
        g.bench_with_input(
            BenchmarkId::new("AES128_CM_SHA1_80", payload),
            &buf,
            |b, buf| {
                b.iter(|| {
                    index += 1;
                    let iv = Aes128CmSha1_80::rtp_iv(salt, 0xdeadbeef, index);
                    // str0m allocates tag room plus aws-lc-rs's CTR scratch (15 − 10 bytes).
                    let mut out = vec![0u8; buf.len() + Aes128CmSha1_80::HMAC_TAG_LEN + 5];
                    enc.encrypt(&iv, &buf[hlen..], &mut out[hlen..]).unwrap();
                    out[..hlen].copy_from_slice(&buf[..hlen]);
                    let hmac = |k: &[u8], parts: &[&[u8]]| hmac.sha1_hmac(k, parts);
                    Aes128CmSha1_80::rtp_hmac(hmac, &auth_key, &mut out, index, buf.len());
                    out.truncate(buf.len() + Aes128CmSha1_80::HMAC_TAG_LEN);
                    black_box(out)
                })
            },
        );

        // AEAD_AES_128_GCM (RFC 7714).
        let mut enc = srtp.aead_aes_128_gcm().create_cipher([7; 16], true);
        let salt12 = [3u8; 12];
        g.bench_with_input(
            BenchmarkId::new("AEAD_AES_128_GCM", payload),
            &buf,
            |b, buf| {
                b.iter(|| {
                    index += 1;
                    let iv = AeadAes128Gcm::rtp_iv(
                        salt12,
                        0xdeadbeef,
                        (index >> 16) as u32,
                        index as u16,
                    );
                    let mut out = vec![0u8; buf.len() + AeadAes128Gcm::TAG_LEN];
                    enc.encrypt(&iv, &buf[..hlen], &buf[hlen..], &mut out[hlen..])
                        .unwrap();
                    out[..hlen].copy_from_slice(&buf[..hlen]);
                    black_box(out)
                })
            },
        );

        // AEAD_AES_256_GCM (RFC 7714): what str0m↔str0m and Chrome↔hawker negotiate.
        let mut enc = srtp.aead_aes_256_gcm().create_cipher([7; 32], true);
        g.bench_with_input(
            BenchmarkId::new("AEAD_AES_256_GCM", payload),
            &buf,
            |b, buf| {
                b.iter(|| {
                    index += 1;
                    let iv = AeadAes256Gcm::rtp_iv(
                        salt12,
                        0xdeadbeef,
                        (index >> 16) as u32,
                        index as u16,
                    );
                    let mut out = vec![0u8; buf.len() + AeadAes256Gcm::TAG_LEN];
                    enc.encrypt(&iv, &buf[..hlen], &buf[hlen..], &mut out[hlen..])
                        .unwrap();
                    out[..hlen].copy_from_slice(&buf[..hlen]);
                    black_box(out)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
