//! The `layer` message on a viewer's `events` channel: which layer of the show's video the
//! viewer receives now (0 is the lowest) and how many layers this shard has flowing. Sent when
//! the viewer's first video packet goes out, at every completed switch, and when the number of
//! flowing layers changes (checked with the layer choice, every `SELECT_EVERY`), so a player
//! can show the current quality without guessing it from the decoded resolution. Only once two
//! layers flow: viewers of a single-layer show never get it.

use std::sync::Arc;
use std::time::Instant;

use super::Core;
use crate::engine::Target;

impl Core {
    /// Tell viewer `idx` its current layer (and the number of layers) if it has not been told
    /// them yet. Called at a switch, with each layer choice, and once the `events` channel is
    /// greeted (a viewer's first layer often starts before its channel opens).
    pub(super) fn tell_layer(&mut self, now: Instant, idx: usize) {
        let Some(p) = self.peers.get_mut(idx) else {
            return;
        };
        let Some(layer) = p.video.as_ref().and_then(|v| v.fwd.layer()) else {
            return;
        };
        // Without a channel the viewer cannot hear it yet; the greeting tells it later.
        if p.channel.is_none() {
            return;
        }
        // A layer counts once its bitrate is known (its first 200 ms on this shard).
        let layers = self
            .shows
            .get(&p.show)
            .map(|s| s.out.rates(now).iter().filter(|r| r.is_some()).count())
            .unwrap_or(0)
            .max(layer as usize + 1);
        let told = (layer, layers as u8);
        // A show without simulcast has nothing to tell (and its viewers nothing to choose).
        if p.layer_told == Some(told) || (layers < 2 && p.layer_told.is_none()) {
            return;
        }
        p.layer_told = Some(told);
        let id = p.id;
        let text = format!(r#"{{"type":"layer","layer":{layer},"layers":{layers}}}"#);
        self.send_text(now, Target::Peer(id), &Arc::from(text));
    }
}
