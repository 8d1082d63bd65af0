#!/usr/bin/env node
// One headless Chromium peer for the interop cells driven from Rust tests
// (tests/interop_chromium.rs, tests/interop_gstreamer.rs):
//
//   node tests/browser/peer.mjs view URL SECONDS
//       WHEP to URL, plays the stream in a <video>, stops after 60 decoded frames or SECONDS,
//       then DELETEs the session
//   node tests/browser/peer.mjs publish URL TOKEN SECONDS [vp8|h264]
//       WHIP to URL with the fake camera (640x480) and microphone, for SECONDS, then DELETE
//
// Prints one JSON line: HTTP statuses, and from getStats the frames decoded (or encoded), the
// frame size, packets received per kind, the codec. CHROMIUM_PATH picks the browser (default
// /usr/bin/chromium). The page is the server's own origin, so no CORS is involved.

import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

const [mode, url, ...rest] = process.argv.slice(2);
if (!['view', 'publish'].includes(mode) || !url) {
  console.error('usage: peer.mjs view URL SECONDS | publish URL TOKEN SECONDS [vp8|h264]');
  process.exit(2);
}
const args =
  mode === 'view'
    ? { mode, url, token: null, seconds: Number(rest[0] || 10), codec: null }
    : { mode, url, token: rest[0], seconds: Number(rest[1] || 10), codec: rest[2] || null };

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
const killer = setTimeout(() => {
  console.error(`peer.mjs: no result after ${args.seconds + 30} s`);
  process.exit(1);
}, (args.seconds + 30) * 1000);
try {
  const page = await browser.newPage();
  await page.goto(new URL('/healthz', url).href);
  const out = await page.evaluate(async (a) => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const pc = new RTCPeerConnection({ iceServers: [] });
    const result = { role: a.mode === 'view' ? 'viewer' : 'publisher', browser: navigator.userAgent };
    if (a.mode === 'view') {
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      document.body.appendChild(video);
      const stream = new MediaStream();
      pc.ontrack = (e) => {
        stream.addTrack(e.track);
        video.srcObject = stream;
      };
    } else {
      const media = await navigator.mediaDevices.getUserMedia({
        video: { width: 640, height: 480 },
        audio: true,
      });
      for (const track of media.getTracks()) {
        const t = pc.addTransceiver(track, { direction: 'sendonly' });
        if (track.kind === 'video' && a.codec) {
          const want = `video/${a.codec === 'h264' ? 'H264' : 'VP8'}`;
          const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
          t.setCodecPreferences([
            ...codecs.filter((c) => c.mimeType === want),
            ...codecs.filter((c) => c.mimeType === 'video/rtx'),
          ]);
        }
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    // Non-trickle: the offer goes with its candidates.
    const gathered = Date.now();
    while (pc.iceGatheringState !== 'complete' && Date.now() - gathered < 3000) await sleep(20);
    const headers = { 'Content-Type': 'application/sdp' };
    if (a.token) headers.Authorization = `Bearer ${a.token}`;
    const resp = await fetch(a.url, { method: 'POST', headers, body: pc.localDescription.sdp });
    result.status = resp.status;
    const answer = await resp.text();
    if (resp.status !== 201) {
      result.error = answer;
      return result;
    }
    const location = new URL(resp.headers.get('Location'), a.url).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const t0 = Date.now();
    while (pc.connectionState !== 'connected' && Date.now() - t0 < 10000) await sleep(20);
    result.connected = pc.connectionState === 'connected';
    const read = async () => {
      const s = {};
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' || r.type === 'outbound-rtp') s[`${r.type}-${r.kind}`] = r;
        if (r.type === 'codec') s[r.id] = r;
      });
      return s;
    };
    const end = Date.now() + a.seconds * 1000;
    let s = await read();
    while (Date.now() < end) {
      await sleep(200);
      s = await read();
      if (a.mode === 'view' && (s['inbound-rtp-video']?.framesDecoded || 0) >= 60) break;
    }
    const v = s[a.mode === 'view' ? 'inbound-rtp-video' : 'outbound-rtp-video'] || {};
    const au = s[a.mode === 'view' ? 'inbound-rtp-audio' : 'outbound-rtp-audio'] || {};
    result.codec = s[v.codecId]?.mimeType || null;
    result.frames = a.mode === 'view' ? v.framesDecoded || 0 : v.framesEncoded || 0;
    result.key_frames = a.mode === 'view' ? v.keyFramesDecoded || 0 : v.keyFramesEncoded || 0;
    result.width = v.frameWidth || null;
    result.height = v.frameHeight || null;
    result.video_packets = a.mode === 'view' ? v.packetsReceived || 0 : v.packetsSent || 0;
    result.audio_packets = a.mode === 'view' ? au.packetsReceived || 0 : au.packetsSent || 0;
    const del = await fetch(location, { method: 'DELETE', headers: a.token ? { Authorization: `Bearer ${a.token}` } : {} });
    result.delete = del.status;
    pc.close();
    return result;
  }, args);
  console.log(JSON.stringify(out));
} finally {
  clearTimeout(killer);
  await browser.close();
}
