"""An aiortc WHIP publisher or WHEP viewer, for hawker's interop cells (tests/interop_aiortc.rs).

    aiortc_peer.py publish URL TOKEN SECONDS [vp8|h264]
                                               video (VP8 by default, or H.264: libvpx or
                                               libx264 through PyAV) + Opus via WHIP for
                                               SECONDS, then DELETE
    aiortc_peer.py view URL SECONDS            WHEP, decode video for up to SECONDS, then DELETE

Prints one JSON line with what happened (HTTP statuses, frames decoded, frame size, seconds to
the first decoded frame). aiortc is a WebRTC stack independent of hawker's (Python; aioice,
pylibsrtp, its own DTLS over pyOpenSSL, libvpx/libopus through PyAV).

aiortc leaves loopback addresses out of its ICE candidates; the tests run on loopback only, so
its host-address lookup is replaced by 127.0.0.1.
"""

import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from av import VideoFrame

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def http(method, url, body=None, token=None):
    """A blocking HTTP request: (status, headers, body)."""
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/sdp")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


class Moving(VideoStreamTrack):
    """320x240 frames whose brightness changes every frame, so the encoder has work to do."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.n += 1
        frame = VideoFrame(width=320, height=240, format="yuv420p")
        for i, plane in enumerate(frame.planes):
            value = (self.n * 7) % 256 if i == 0 else 128
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


async def negotiate(pc, url, token):
    offer = await pc.createOffer()
    await pc.setLocalDescription(offer)
    loop = asyncio.get_running_loop()
    status, headers, answer = await loop.run_in_executor(
        None, http, "POST", url, pc.localDescription.sdp.encode(), token
    )
    if status != 201:
        return status, None
    location = headers.get("Location") or headers.get("location")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return status, urllib.parse.urljoin(url, location)


async def publish(url, token, seconds, codec):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver(Moving(), direction="sendonly")
    want = {"vp8": "video/VP8", "h264": "video/H264"}[codec]
    caps = RTCRtpSender.getCapabilities("video").codecs
    video.setCodecPreferences(
        [c for c in caps if c.mimeType == want] + [c for c in caps if c.mimeType == "video/rtx"]
    )
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    out = {"role": "publisher"}
    out["status"], session = await negotiate(pc, url, token)
    if session:
        t0 = time.monotonic()
        while pc.connectionState != "connected" and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.05)
        out["connected"] = pc.connectionState == "connected"
        out["codec"] = next(
            (line.split()[1].split("/")[0] for line in pc.remoteDescription.sdp.splitlines()
             if line.startswith("a=rtpmap:") and "/90000" in line and "rtx" not in line.lower()),
            None,
        )
        await asyncio.sleep(seconds)
        loop = asyncio.get_running_loop()
        out["delete"], _, _ = await loop.run_in_executor(None, http, "DELETE", session, None, token)
    await pc.close()
    return out


async def view(url, seconds):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    got = {"frames": 0, "audio_frames": 0, "width": None, "height": None, "first_frame_s": None}
    t0 = time.monotonic()
    done = asyncio.Event()

    async def consume(track):
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            if track.kind == "video":
                got["frames"] += 1
                got["width"], got["height"] = frame.width, frame.height
                if got["first_frame_s"] is None:
                    got["first_frame_s"] = round(time.monotonic() - t0, 3)
                if got["frames"] >= 60:
                    done.set()
            else:
                got["audio_frames"] += 1

    @pc.on("track")
    def on_track(track):
        asyncio.ensure_future(consume(track))

    out = {"role": "viewer"}
    out["status"], session = await negotiate(pc, url, None)
    if session:
        try:
            await asyncio.wait_for(done.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        stats = await pc.getStats()
        for s in stats.values():
            if s.type == "inbound-rtp":
                got[s.kind + "_packets"] = got.get(s.kind + "_packets", 0) + s.packetsReceived
        loop = asyncio.get_running_loop()
        out["delete"], _, _ = await loop.run_in_executor(None, http, "DELETE", session, None, None)
    await pc.close()
    out.update(got)
    return out


def main():
    mode = sys.argv[1]
    if mode == "publish":
        codec = sys.argv[5] if len(sys.argv) > 5 else "vp8"
        out = asyncio.run(publish(sys.argv[2], sys.argv[3], float(sys.argv[4]), codec))
    elif mode == "view":
        out = asyncio.run(view(sys.argv[2], float(sys.argv[3])))
    else:
        raise SystemExit("usage: aiortc_peer.py publish URL TOKEN SECONDS [vp8|h264] | view URL SECONDS")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
