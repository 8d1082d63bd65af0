//! The `events` data-channel parser (`hawker::live::protocol::parse`) on any text: it answers
//! a message or a rejection, never panics; a rejection serialises to a JSON `error`.
#![no_main]

use hawker::live::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match protocol::parse(&text) {
        Ok(msg) => {
            let _ = protocol::is_seller_message(&msg);
            let _ = protocol::type_name(&msg);
        }
        Err(rej) => {
            let v: serde_json::Value =
                serde_json::from_str(&rej.to_json()).expect("a rejection is JSON");
            assert_eq!(v["type"], "error");
        }
    }
});
