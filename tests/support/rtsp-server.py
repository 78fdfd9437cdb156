#!/usr/bin/python3
"""An IP camera for the tests: serves a video file over RTSP, looping forever.

GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0, imported through
Debian's own Python: python3-gi does not load into a pyenv or venv Python).

The file's H.264 or H.265 access units are read into memory once; a pacing
thread plays them at their own timestamps, again and again, like a camera that
never stops: each loop's timestamps continue the last one's, so a loop is
invisible to a client (no new session, no jump back in time). Every client
shares that one live stream (RTP over TCP interleaved or UDP, RTCP sender
reports from rtpbin, SPS/PPS before every keyframe) and joins it at the next
keyframe.

usage: tests/support/rtsp-server.py VIDEO [--port 0] [--path /cam]
           [--user U --password P --auth basic|digest]
           [--transport any|tcp|udp]

Prints `EPOCH <unix time of the video's first frame> PERIOD <loop seconds>`,
then `READY rtsp://127.0.0.1:PORT/cam` on stdout once listening. Exits 0 on
SIGTERM or SIGINT; exits 2 with a message on stderr for a file it cannot serve.
"""

import argparse
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

# What each codec needs in the served pipeline; a file in another codec is refused.
CODECS = {
    "video/x-h264": ("h264parse", "rtph264pay"),
    "video/x-h265": ("h265parse", "rtph265pay"),
}
# Longest the file may take to load (demux and parse, no decoding).
LOAD_TIMEOUT_S = 120


class Refused(Exception):
    """A video this server cannot serve; the message says why."""


class Clip:
    """The file's access units in decode order, in Annex-B byte-stream form."""

    def __init__(self, path):
        self.caps = None  # of the parsed stream, byte-stream/au
        self._read = []  # (data, pts or None, dts or None, keyframe) as read
        self.units = []  # (data, dts_ns from the first unit, pts - dts in ns, keyframe)
        self.period_ns = 0  # one loop: from the first unit's DTS to after the last one
        self.fps = None
        self._load(path)

    def _load(self, path):
        pipeline = Gst.Pipeline.new("load")
        src = Gst.ElementFactory.make("filesrc")
        parse = Gst.ElementFactory.make("parsebin")
        if src is None or parse is None:
            raise Refused("GStreamer's core elements are missing (scripts/setup.sh)")
        src.set_property("location", path)
        pipeline.add(src)
        pipeline.add(parse)
        src.link(parse)
        state = {"error": None, "linked": False}
        sink = Gst.ElementFactory.make("appsink")
        sink.set_property("sync", False)
        sink.set_property("emit-signals", False)

        def pad_added(_parsebin, pad):
            caps = pad.get_current_caps() or pad.query_caps(None)
            name = caps.get_structure(0).get_name() if caps and caps.get_size() else "?"
            if state["linked"] or name.startswith(("audio/", "text/", "subpicture/")):
                return
            if name not in CODECS:
                state["error"] = f"its stream is {name}; this camera serves H.264 or H.265"
                return
            parser = Gst.ElementFactory.make(CODECS[name][0])
            if parser is None:
                state["error"] = f"GStreamer has no {CODECS[name][0]} (scripts/setup.sh)"
                return
            parser.set_property("config-interval", -1)
            want = Gst.ElementFactory.make("capsfilter")
            want.set_property(
                "caps", Gst.Caps.from_string(f"{name},stream-format=byte-stream,alignment=au")
            )
            for element in (parser, want, sink):
                pipeline.add(element)
                element.sync_state_with_parent()
            if pad.link(parser.get_static_pad("sink")) != Gst.PadLinkReturn.OK:
                state["error"] = "the parsed stream does not link to its parser"
                return
            parser.link(want)
            want.link(sink)
            state["linked"] = True

        parse.connect("pad-added", pad_added)
        pipeline.set_state(Gst.State.PLAYING)
        bus = pipeline.get_bus()
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        try:
            while True:
                if state["error"]:
                    raise Refused(state["error"])
                if state["linked"]:
                    sample = sink.emit("try-pull-sample", 100 * Gst.MSECOND)
                    if sample is not None:
                        self._take(sample)
                        continue
                    if sink.get_property("eos"):
                        break
                message = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
                if message is not None and message.type == Gst.MessageType.ERROR:
                    error, _debug = message.parse_error()
                    raise Refused(f"cannot read the video: {error.message}")
                if message is not None and not state["linked"]:
                    raise Refused("the file has no video stream")
                if not state["linked"]:
                    time.sleep(0.01)
                if time.monotonic() > deadline:
                    raise Refused(f"the video did not load in {LOAD_TIMEOUT_S} s")
        finally:
            pipeline.set_state(Gst.State.NULL)
        if not self._read:
            raise Refused("the video has no frames")
        if not self._read[0][3]:
            raise Refused("the video does not start with a keyframe")
        self._time_units()
        fps = self.caps.get_structure(0).get_fraction("framerate")
        if fps[0] and fps[1] > 0 and fps[2] > 0:
            self.fps = fps[1] / fps[2]
        frame_ns = round(Gst.SECOND / self.fps) if self.fps else self._median_step()
        self.period_ns = self.units[-1][1] + frame_ns

    def _take(self, sample):
        buffer = sample.get_buffer()
        if self.caps is None:
            self.caps = sample.get_caps()
        pts = None if buffer.pts == Gst.CLOCK_TIME_NONE else buffer.pts
        dts = None if buffer.dts == Gst.CLOCK_TIME_NONE else buffer.dts
        if pts is None and dts is None:
            raise Refused("the video's frames have no timestamps (serve an .mp4 or .mkv)")
        ok, info = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise Refused("cannot read a frame's bytes")
        data = bytes(info.data)
        buffer.unmap(info)
        keyframe = not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT)
        self._read.append((data, pts, dts, keyframe))

    def _time_units(self):
        """Decode times for every unit, from the container or, where it
        keeps presentation times only (Matroska), from the sorted
        presentation times, shifted so that none decodes after it shows."""
        pts = [unit[1] if unit[1] is not None else unit[2] for unit in self._read]
        dts = [unit[2] for unit in self._read]
        if any(d is None for d in dts):
            dts = sorted(pts)
            late = max(d - p for d, p in zip(dts, pts))
            dts = [d - late for d in dts]
        first = dts[0]
        self.units = [
            (data, d - first, max(0, p - d), keyframe)
            for (data, _pts, _dts, keyframe), d, p in zip(self._read, dts, pts)
        ]
        self._read = []

    def _median_step(self):
        steps = sorted(b[1] - a[1] for a, b in zip(self.units, self.units[1:]) if b[1] > a[1])
        return steps[len(steps) // 2] if steps else Gst.SECOND // 30


class Feed:
    """One served media's appsrc, fed from the clip while its client watches.

    Its timestamps are the camera's own (the clip's, continued loop after
    loop), shifted once, when the feed starts, onto the media's running time:
    as regular as a camera's clock however late the pacing thread wakes.
    """

    # Buffers waiting in the appsrc before it counts as not consuming (a
    # client between DESCRIBE and PLAY): pushing stops until it drains,
    # then resumes at a keyframe, so no backlog builds up.
    MAX_QUEUED = 15

    def __init__(self, appsrc):
        self.appsrc = appsrc
        self.offset_ns = None  # camera time to running time; None until a keyframe starts it

    def push(self, data, camera_ns, reorder_ns, keyframe):
        queued = self.appsrc.get_property("current-level-buffers")
        if queued >= self.MAX_QUEUED:
            self.offset_ns = None
            return
        if self.offset_ns is None:
            clock = self.appsrc.get_clock()
            if not keyframe or queued > 0 or clock is None:
                return
            running_ns = clock.get_time() - self.appsrc.get_base_time()
            self.offset_ns = running_ns - camera_ns
        buffer = Gst.Buffer.new_wrapped(data)
        buffer.dts = camera_ns + self.offset_ns
        buffer.pts = buffer.dts + reorder_ns
        buffer.duration = Gst.CLOCK_TIME_NONE
        if not keyframe:
            buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
        self.appsrc.emit("push-buffer", buffer)


class Camera:
    """Plays the clip in real time, forever, into every feed."""

    def __init__(self, clip):
        self.clip = clip
        self.feeds = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.start = time.monotonic()

    def attach(self, media, feed):
        with self.lock:
            self.feeds[media] = feed

    def detach(self, media):
        with self.lock:
            self.feeds.pop(media, None)

    def run(self):
        start = self.start
        loop = 0
        while not self.stop.is_set():
            loop_ns = loop * self.clip.period_ns
            for data, dts_ns, reorder_ns, keyframe in self.clip.units:
                camera_ns = loop_ns + dts_ns
                wait = start + camera_ns / Gst.SECOND - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return
                with self.lock:
                    feeds = list(self.feeds.values())
                for feed in feeds:
                    feed.push(data, camera_ns, reorder_ns, keyframe)
            loop += 1


def factory_for(clip, camera, transport):
    codec = clip.caps.get_structure(0).get_name()
    parser, payloader = CODECS[codec]
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( appsrc name=camera is-live=true format=time do-timestamp=false"
        f" ! {parser} ! {payloader} name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(True)  # one camera, one stream, any number of viewers
    if transport != "any":
        # Only this lower transport: a client asking for the other is
        # refused at SETUP (461 Unsupported Transport).
        factory.set_protocols(
            GstRtsp.RTSPLowerTrans.TCP if transport == "tcp" else GstRtsp.RTSPLowerTrans.UDP
        )

    def configure(_factory, media):
        appsrc = media.get_element().get_by_name("camera")
        appsrc.set_property("caps", clip.caps)
        camera.attach(media, Feed(appsrc))
        media.connect("unprepared", lambda m: camera.detach(m))

    factory.connect("media-configure", configure)
    return factory


def require_auth(server, factory, args):
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    if args.auth == "digest":
        auth.add_digest(args.user, args.password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    server.set_auth(auth)
    factory.add_role_from_structure(
        Gst.Structure.new_from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )


def main():
    parser = argparse.ArgumentParser(description="Serve a video file as a looping RTSP camera.")
    parser.add_argument("video", help="an .mp4 or .mkv with one H.264 or H.265 video stream")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port (default 8554)")
    parser.add_argument("--path", default="/cam", help="the stream's path (default /cam)")
    parser.add_argument("--user", help="require this user name")
    parser.add_argument("--password", help="and this password")
    parser.add_argument("--auth", choices=("basic", "digest"), default="basic")
    parser.add_argument(
        "--transport",
        choices=("any", "tcp", "udp"),
        default="any",
        help="RTP over TCP interleaved, over UDP, or either as the client asks (default)",
    )
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if not args.path.startswith("/"):
        parser.error("--path starts with /")
    if not 0 <= args.port <= 65535:
        parser.error("--port is 0 to 65535")

    Gst.init(None)
    try:
        clip = Clip(args.video)
    except Refused as refused:
        print(f"rtsp-server: {args.video}: {refused}", file=sys.stderr)
        return 2

    camera = Camera(clip)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = factory_for(clip, camera, args.transport)
    if args.user is not None:
        require_auth(server, factory, args)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"rtsp-server: cannot listen on port {args.port} (in use?)", file=sys.stderr)
        return 2

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    # The wall-clock time of the video's first frame: loop n of a pass that
    # ends at t s in the file ends at EPOCH + n * period + t.
    camera.start = time.monotonic()
    epoch = time.time()
    pacer = threading.Thread(target=camera.run, name="camera", daemon=True)
    pacer.start()
    codec = clip.caps.get_structure(0).get_name()
    fps = f"{clip.fps:g} fps" if clip.fps else "fps from timestamps"
    print(
        f"rtsp-server: {len(clip.units)} frames ({codec}, {fps}), a loop every"
        f" {clip.period_ns / Gst.SECOND:.3f} s",
        file=sys.stderr,
        flush=True,
    )
    print(f"EPOCH {epoch:.6f} PERIOD {clip.period_ns / Gst.SECOND:.6f}", flush=True)
    print(f"READY rtsp://127.0.0.1:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    camera.stop.set()
    pacer.join(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
