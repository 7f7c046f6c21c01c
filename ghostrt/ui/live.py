"""The live tab's server side: the browser's webcam arrives over WebRTC (aiortc), each frame goes into the one
stream scheduler, and the newest swapped, marked frame goes back on the same peer connection.

A session is one RTCPeerConnection: its frames are submitted as they arrive (the scheduler drops stale ones),
its outgoing track sends the newest output, and closing or losing the connection frees its scheduler state.
"""

import asyncio
import fractions
import time
import uuid

import numpy as np
from fastapi import Body

from ghostrt.errors import GhostError
from ghostrt.ui.runner import LiveConfig, SwapperRunner, draw_mark
from ghostrt.ui.scheduler import StreamScheduler

CLOCK = 90000
RESEND_SECONDS = 0.5          # with no new output this long, the last frame is sent again (keeps video alive)


class LockedRunner(SwapperRunner):
    """SwapperRunner holding the app's Swapper lock for each call (image and video requests share the nets)."""

    def __init__(self, swapper, lock):
        super().__init__(swapper)
        self.lock = lock

    def open(self, config):
        with self.lock:
            return super().open(config)

    def run(self, items):
        with self.lock:
            return super().run(items)

    def close(self, state):
        with self.lock:
            super().close(state)


def _track_class():
    from aiortc import MediaStreamTrack

    class SwappedTrack(MediaStreamTrack):
        """Outgoing video: the stream's newest scheduler output (as soon as it is there), resent when idle."""

        kind = "video"

        def __init__(self, stream):
            super().__init__()
            self.stream, self.seq, self.last = stream, 0, None
            self.event = asyncio.Event()
            self.start = time.perf_counter()
            self.sent = 0

        def wake(self):
            self.event.set()

        async def recv(self):
            from av import VideoFrame

            deadline = time.perf_counter() + RESEND_SECONDS
            while True:
                out = self.stream.output
                if out is not None and out.seq > self.seq:
                    self.seq, self.last = out.seq, out.frame
                    break
                if self.stream.closed or self.readyState != "live":
                    from aiortc.mediastreams import MediaStreamError

                    raise MediaStreamError
                left = deadline - time.perf_counter()
                if left <= 0:
                    if self.last is None:
                        self.last = draw_mark(np.full((240, 320, 3), 40, np.uint8), "waiting for frames")
                    break
                self.event.clear()
                try:
                    await asyncio.wait_for(self.event.wait(), timeout=min(left, 0.05))
                except asyncio.TimeoutError:
                    pass
            frame = VideoFrame.from_ndarray(np.ascontiguousarray(self.last), format="rgb24")
            frame.pts = int((time.perf_counter() - self.start) * CLOCK)
            frame.time_base = fractions.Fraction(1, CLOCK)
            self.sent += 1
            return frame

    return SwappedTrack


class LiveManager:
    def __init__(self, state, **scheduler_options):
        self.state = state
        self.scheduler = StreamScheduler(LockedRunner(state.sw, state.lock), **scheduler_options).start()
        self.pcs: dict = {}
        self.tasks: dict = {}

    def stats(self) -> dict:
        return self.scheduler.stats()

    async def offer(self, sdp: str, kind: str, sources: list[str], faces: str) -> dict:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        if not sources:
            raise GhostError("no source photo: upload one in the Live tab before starting the camera")
        entries = [self.state.entry(k, "source") for k in sources]
        if faces not in ("largest", "all"):
            raise GhostError(f"faces {faces!r}: use largest or all")
        loop = asyncio.get_running_loop()
        if len(entries) == 1:
            who = await loop.run_in_executor(None, self.state.identity, entries[0])
        else:
            def averaged():
                with self.state.lock:
                    return self.state.sw.identity([e.rgb for e in entries])
            who = await loop.run_in_executor(None, averaged)
        sid = uuid.uuid4().hex[:12]
        config = LiveConfig(who=who, faces=faces, key=",".join(sorted(sources)) + "|" + faces)
        track_cls = _track_class()
        holder = {}
        stream = await loop.run_in_executor(
            None, lambda: self.scheduler.open(sid, config,
                                              on_output=lambda _o: loop.call_soon_threadsafe(holder["t"].wake)))
        out_track = track_cls(stream)
        holder["t"] = out_track
        pc = RTCPeerConnection()
        self.pcs[sid] = pc

        @pc.on("track")
        def on_track(track):
            if track.kind == "video":
                self.tasks[sid] = asyncio.ensure_future(self._consume(sid, track))

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed", "disconnected"):
                await self.close(sid)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        pc.addTrack(out_track)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return {"sid": sid, "sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    async def _consume(self, sid: str, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                rgb = frame.to_ndarray(format="rgb24")
                if not self.scheduler.submit(sid, rgb, time.perf_counter()):
                    return
        except (MediaStreamError, asyncio.CancelledError):
            return

    async def close(self, sid: str) -> bool:
        pc = self.pcs.pop(sid, None)
        task = self.tasks.pop(sid, None)
        if task is not None:
            task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.scheduler.close, sid)
        if pc is not None:
            await pc.close()
        return pc is not None

    async def close_all(self) -> None:
        for sid in list(self.pcs):
            await self.close(sid)
        await asyncio.get_running_loop().run_in_executor(None, self.scheduler.stop)


def mount(app, state, **scheduler_options) -> None:
    manager = LiveManager(state, **scheduler_options)
    app.state.live = manager

    @app.post("/api/live/offer")
    async def live_offer(body: dict = Body(...)):
        return await manager.offer(str(body.get("sdp", "")), str(body.get("type", "offer")),
                                   [str(s) for s in body.get("sources", [])], str(body.get("faces", "largest")))

    @app.get("/api/live/{sid}/stats")
    def live_stats(sid: str):
        stats = manager.stats()["streams"].get(sid)
        if stats is None:
            return {"open": False, "streams": len(manager.stats()["streams"])}
        return {"open": True, **stats, "streams": len(manager.stats()["streams"])}

    @app.post("/api/live/{sid}/close")
    async def live_close(sid: str):
        return {"closed": await manager.close(sid)}
