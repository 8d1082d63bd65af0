//! The STUN ufrag parser (`hawker::engine::shard::stun_local_ufrag`) on any datagram: a slice
//! of the input or `None`, never a panic, and never a `:` in the ufrag.
#![no_main]

use hawker::engine::shard::stun_local_ufrag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = stun_local_ufrag(data) {
        assert!(!ufrag.contains(&b':'));
        assert!(ufrag.len() <= data.len());
    }
});
