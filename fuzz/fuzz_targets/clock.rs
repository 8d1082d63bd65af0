//! The video-clock mapping (`hawker::live::clock`): any sender report and capture time map to
//! a timestamp or to `None` without overflow, within the extrapolation window of the report;
//! the wrap-aware comparison is antisymmetric.
#![no_main]

use hawker::live::clock::{at_or_after, rtp_at, MAX_EXTRAPOLATION_MS, VIDEO_HZ};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 24 {
        return;
    }
    let ntp = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let rtp = u32::from_le_bytes(data[8..12].try_into().unwrap());
    let cap = i64::from_le_bytes(data[12..20].try_into().unwrap());
    let b = u32::from_le_bytes(data[20..24].try_into().unwrap());
    if let Some(ts) = rtp_at(ntp, rtp, cap) {
        // Within the window, the result is at most that many ticks from the report.
        let d = ts.wrapping_sub(rtp) as i32 as i64;
        assert!(d.abs() <= MAX_EXTRAPOLATION_MS * VIDEO_HZ / 1000);
    }
    if b != rtp && b.wrapping_sub(rtp) != 1 << 31 {
        assert_ne!(at_or_after(rtp, b), at_or_after(b, rtp));
    }
    assert!(at_or_after(b, b));
});
