// Browser side of the hawker WHIP/WHEP end-to-end test. Loaded by index.html; driven from
// whip_whep.mjs through page.evaluate(). One page plays one role (publisher or viewer); the
// state lives on `window.e2e`. Everything here is plain WebRTC + fetch, as a real studio or
// viewer page would do it: non-trickle offer (ICE gathering awaited), POST application/sdp,
// 201 + Location, answer applied, DELETE Location to leave.
'use strict';

(() => {
  const t0 = performance.now();
  const state = {
    role: null,
    pc: null,
    stream: null, // publisher: getUserMedia stream (kept across reconnects)
    location: null,
    token: null,
    events: [], // {t, ev, detail}
    tracks: 0, // viewer: number of 'track' events
    negotiationNeeded: 0,
    pcCount: 0,
  };

  function ev(name, detail) {
    const e = { t: Math.round(performance.now() - t0), pc: state.pcCount, ev: name };
    if (detail !== undefined) e.detail = detail;
    state.events.push(e);
    const log = document.getElementById('log');
    if (log) log.textContent += `${e.t}ms #${e.pc} ${name}${detail !== undefined ? ' ' + JSON.stringify(detail) : ''}\n`;
  }

  function watch(pc) {
    pc.addEventListener('connectionstatechange', () => ev('connectionstate', pc.connectionState));
    pc.addEventListener('iceconnectionstatechange', () => ev('iceconnectionstate', pc.iceConnectionState));
    pc.addEventListener('signalingstatechange', () => ev('signalingstate', pc.signalingState));
    pc.addEventListener('icegatheringstatechange', () => ev('icegatheringstate', pc.iceGatheringState));
    pc.addEventListener('negotiationneeded', () => {
      state.negotiationNeeded++;
      ev('negotiationneeded');
    });
  }

  function gatheringComplete(pc, ms) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState === 'complete') {
          pc.removeEventListener('icegatheringstatechange', done);
          clearTimeout(timer);
          resolve();
        }
      };
      // Loopback host candidates are gathered at once; do not hang if gathering never ends.
      const timer = setTimeout(() => {
        pc.removeEventListener('icegatheringstatechange', done);
        ev('icegathering-timeout');
        resolve();
      }, ms);
      pc.addEventListener('icegatheringstatechange', done);
    });
  }

  // POST the (complete) local offer; apply the answer. Returns the exchange for the log.
  async function signal(pc, url, token) {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await gatheringComplete(pc, 5000);
    const sdp = pc.localDescription.sdp;
    const headers = { 'Content-Type': 'application/sdp' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const started = performance.now();
    let resp;
    try {
      resp = await fetch(url, { method: 'POST', headers, body: sdp });
    } catch (e) {
      throw new Error(`POST ${url} failed at the fetch level (network or CORS): ${e}`);
    }
    const body = await resp.text();
    const ms = Math.round(performance.now() - started);
    const loc = resp.headers.get('Location');
    ev('post', { url, status: resp.status, ms, location: loc });
    if (resp.status !== 201) {
      throw new Error(`POST ${url}: expected 201, got ${resp.status} ${resp.statusText}: ${body.trim()}`);
    }
    if (!loc) throw new Error(`POST ${url}: 201 without a readable Location header (CORS expose-headers?)`);
    if (!(resp.headers.get('Content-Type') || '').startsWith('application/sdp')) {
      throw new Error(`POST ${url}: answer Content-Type is ${resp.headers.get('Content-Type')}`);
    }
    state.location = new URL(loc, url).toString();
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    return { status: resp.status, ms, location: state.location, offer: sdp, answer: body };
  }

  async function publish({ url, token }) {
    state.role = 'publisher';
    document.getElementById('role').textContent = 'publisher';
    if (!state.stream) {
      state.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: 640, height: 480, frameRate: 30 },
        audio: true,
      });
      document.getElementById('video').srcObject = state.stream;
    }
    state.token = token;
    state.pcCount++;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    state.pc = pc;
    watch(pc);
    for (const track of state.stream.getTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [state.stream] });
    }
    return signal(pc, url, token);
  }

  async function view({ url, token }) {
    state.role = 'viewer';
    document.getElementById('role').textContent = 'viewer';
    state.pcCount++;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    state.pc = pc;
    watch(pc);
    const video = document.getElementById('video');
    const remote = new MediaStream();
    video.srcObject = remote;
    pc.addEventListener('track', (e) => {
      state.tracks++;
      ev('track', { kind: e.track.kind, mid: e.transceiver.mid });
      remote.addTrack(e.track);
      video.play().catch((err) => ev('play-error', String(err)));
    });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    return signal(pc, url, token);
  }

  function waitConnected(ms) {
    const pc = state.pc;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (pc.connectionState === 'connected') {
          finish();
          resolve(Math.round(performance.now() - t0));
        } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          finish();
          reject(new Error(`connectionState became ${pc.connectionState} (ice ${pc.iceConnectionState})`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`not connected after ${ms} ms: connectionState ${pc.connectionState}, ice ${pc.iceConnectionState}`));
      }, ms);
      const finish = () => {
        clearTimeout(timer);
        pc.removeEventListener('connectionstatechange', check);
      };
      pc.addEventListener('connectionstatechange', check);
      check();
    });
  }

  // DELETE the session resource and close the peer connection. Returns the DELETE status.
  async function hangUp() {
    let status = null;
    if (state.location) {
      const headers = {};
      if (state.token) headers.Authorization = `Bearer ${state.token}`;
      const resp = await fetch(state.location, { method: 'DELETE', headers });
      status = resp.status;
      ev('delete', { url: state.location, status });
      state.location = null;
    }
    if (state.pc) state.pc.close();
    return status;
  }

  async function rawStats() {
    if (!state.pc) return [];
    const out = [];
    (await state.pc.getStats()).forEach((s) => out.push(s));
    return out;
  }

  // A flat summary of the interesting getStats() numbers.
  async function stats() {
    const pc = state.pc;
    const all = new Map();
    (await pc.getStats()).forEach((s) => all.set(s.id, s));
    const codecOf = (s) => (s.codecId && all.get(s.codecId) ? all.get(s.codecId).mimeType : null);
    const sum = {
      role: state.role,
      t: Math.round(performance.now() - t0),
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      signalingState: pc.signalingState,
      tracks: state.tracks,
      negotiationNeeded: state.negotiationNeeded,
      video: { entries: 0, ssrcs: [], codec: null },
      audio: { entries: 0, ssrcs: [], codec: null },
      pair: null,
    };
    const add = (o, k, v) => { if (typeof v === 'number') o[k] = (o[k] || 0) + v; };
    for (const s of all.values()) {
      if ((s.type === 'inbound-rtp' || s.type === 'outbound-rtp') && (s.kind === 'video' || s.kind === 'audio')) {
        const o = sum[s.kind];
        o.entries++;
        o.ssrcs.push(s.ssrc);
        o.codec = codecOf(s) || o.codec;
        for (const k of ['packetsReceived', 'packetsLost', 'bytesReceived', 'framesDecoded', 'framesReceived',
          'framesDropped', 'keyFramesDecoded', 'freezeCount', 'nackCount', 'pliCount', 'firCount',
          'totalSamplesReceived', 'concealedSamples', 'packetsSent', 'bytesSent', 'framesEncoded',
          'framesSent', 'keyFramesEncoded', 'retransmittedPacketsSent']) {
          add(o, k, s[k]);
        }
        for (const k of ['frameWidth', 'frameHeight', 'framesPerSecond', 'decoderImplementation',
          'encoderImplementation', 'qualityLimitationReason', 'jitter']) {
          if (s[k] !== undefined) o[k] = s[k];
        }
      }
      if (s.type === 'transport' && s.selectedCandidatePairId && all.get(s.selectedCandidatePairId)) {
        const p = all.get(s.selectedCandidatePairId);
        const l = all.get(p.localCandidateId) || {};
        const r = all.get(p.remoteCandidateId) || {};
        sum.pair = {
          state: p.state,
          local: `${l.address}:${l.port}/${l.protocol} ${l.candidateType}`,
          remote: `${r.address}:${r.port}/${r.protocol} ${r.candidateType}`,
          rtt: p.currentRoundTripTime,
          dtlsState: s.dtlsState,
        };
      }
    }
    return sum;
  }

  window.e2e = { publish, view, waitConnected, hangUp, stats, rawStats, state, events: () => state.events };
})();
