//! The inbound `events` channel guard in the shard, on the virtual-time harness
//! (`hawker::sim`): the answer's SCTP `max-message-size` is the protocol's limit, a flood is cut
//! to the peer's burst and rate before the control plane hears of it (one `rate_limited`
//! reply, not one per message), what passes keeps its order, and another viewer's messages
//! are not affected.

use std::time::Duration;

use hawker::engine::shard::inbound::{BURST, PER_SECOND};
use hawker::live::protocol::MAX_MESSAGE_BYTES;
use hawker::sim::{Config, Link, Publish, Sim};

const DELAY: Duration = Duration::from_millis(10);
const SHOW: &str = "dc";

fn errors(sim: &Sim, h: usize, code: &str) -> usize {
    let needle = format!("\"code\":\"{code}\"");
    sim.peer(h)
        .texts
        .iter()
        .filter(|(_, t)| t.contains("\"type\":\"error\"") && t.contains(&needle))
        .count()
}

fn setup() -> (Sim, usize, usize) {
    let mut sim = Sim::new(Config {
        shards: 2,
        seed: 21,
        ..Config::default()
    });
    let _p = sim
        .publish(SHOW, Publish::default(), Link::with_delay(DELAY))
        .unwrap();
    let flooder = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    let calm = sim.view(SHOW, Some(0), Link::with_delay(DELAY)).unwrap();
    assert!(sim.run_until(Duration::from_secs(3), |s| {
        s.peer(flooder).channel_at.is_some() && s.peer(calm).channel_at.is_some()
    }));
    // The greeting (snapshot) has gone out, so replies are not held back.
    sim.run_for(Duration::from_millis(100));
    (sim, flooder, calm)
}

#[test]
fn a_flood_is_cut_to_the_burst_in_order_with_one_reply() {
    let (mut sim, flooder, calm) = setup();
    let (fid, cid) = (sim.peer(flooder).id, sim.peer(calm).id);
    let sent = 500;
    for i in 0..sent {
        assert!(sim.send_text(flooder, &format!("{{\"type\":\"ping\",\"n\":{i}}}")));
    }
    for i in 0..5 {
        assert!(sim.send_text(calm, &format!("{{\"type\":\"ping\",\"n\":{i}}}")));
    }
    sim.run_for(Duration::from_millis(200));
    let heard = sim.texts_from(fid);
    // The whole flood arrives within a few link delays: the burst, plus what the rate refills
    // meanwhile (at most PER_SECOND × 0.2 s), never the flood.
    let most = BURST as usize + (PER_SECOND as usize / 5) + 1;
    assert!(
        heard.len() >= BURST as usize && heard.len() <= most,
        "the control plane heard {} of {sent} messages; want {BURST}..={most}",
        heard.len()
    );
    // In the order sent, no gaps among the first BURST.
    for (i, t) in heard.iter().take(BURST as usize).enumerate() {
        assert_eq!(t, &format!("{{\"type\":\"ping\",\"n\":{i}}}"));
    }
    let refused = sim.shard_metrics(0).dc_refused_rate.get();
    assert_eq!(
        refused as usize,
        sent - heard.len(),
        "every refusal counted"
    );
    assert_eq!(
        errors(&sim, flooder, "rate_limited"),
        1,
        "one reply per run"
    );
    // The other viewer on the same shard is untouched.
    assert_eq!(sim.texts_from(cid).len(), 5);
    assert_eq!(errors(&sim, calm, "rate_limited"), 0);

    // After a pause, the peer may speak again at its rate.
    sim.run_for(Duration::from_secs(3));
    let before = sim.texts_from(fid).len();
    assert!(sim.send_text(flooder, "{\"type\":\"ping\",\"n\":\"again\"}"));
    sim.run_for(Duration::from_millis(100));
    let after = sim.texts_from(fid);
    assert_eq!(after.len(), before + 1);
    assert!(after.last().unwrap().contains("again"));
}

#[test]
fn the_answer_caps_messages_at_the_protocol_limit() {
    let (mut sim, flooder, _calm) = setup();
    let fid = sim.peer(flooder).id;
    let fits = format!(
        "{{\"type\":\"question\",\"text\":\"{}\"}}",
        "a".repeat(MAX_MESSAGE_BYTES - 30)
    );
    assert!(fits.len() <= MAX_MESSAGE_BYTES);
    assert!(
        sim.send_text(flooder, &fits),
        "a message at the limit is sent"
    );
    // One byte over what the answer advertised: the client's own stack refuses to send it, so
    // the server never reassembles more than the limit.
    let over = "a".repeat(MAX_MESSAGE_BYTES + 1);
    assert!(
        !sim.send_text(flooder, &over),
        "the client stack sent a message over the advertised max-message-size"
    );
    sim.run_for(Duration::from_millis(100));
    assert_eq!(sim.texts_from(fid), vec![fits]);
}
