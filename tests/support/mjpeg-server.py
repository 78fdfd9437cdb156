#!/usr/bin/python3
"""An MJPEG camera for the tests: JPEG frames over HTTP, looping forever.

Serves `multipart/x-mixed-replace` at http://127.0.0.1:PORT/stream, each part
`Content-Type: image/jpeg` with its `Content-Length`, paced at --fps. The
frames come from a folder of JPEGs (by name) or from the JPEGs of an .mjpeg
file (`ffmpeg -i x.mp4 -c:v mjpeg -q:v 4 -r 10 -f mjpeg x.mjpeg`). Like a
camera, the stream is live: every client sees the frame of the moment, and a
client too slow for --fps misses frames instead of falling behind.

usage: tests/support/mjpeg-server.py SOURCE [--port 0] [--fps 10]
           [--user U --password P] [--tls-cert CERT.pem --tls-key KEY.pem]

With --tls-cert and --tls-key it serves HTTPS (TLS 1.2 or 1.3) with that
certificate chain. Prints `READY http://127.0.0.1:PORT/stream` (or
`https://…`) on stdout once listening. Exits 0
on SIGTERM or SIGINT; exits 2 with a message on stderr for a source it cannot
serve. Python's standard library only.
"""

import argparse
import base64
import hmac
import mmap
import os
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOUNDARY = "camera-frame"


class Refused(Exception):
    """A source this server cannot serve; the message says why."""


def jpeg_end(data, start):
    """The offset just past the JPEG that starts at `start`, or None if it is cut short.

    Walks the marker segments, and the entropy-coded data after each start of
    scan, where 0xFF is followed by 0x00 (stuffing) or a restart marker.
    """
    size = len(data)
    if data[start : start + 2] != b"\xff\xd8":
        return None
    at = start + 2
    while at + 2 <= size:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:
            return at + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if at + 4 > size or length < 2:
            return None
        at += 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            while True:
                at = data.find(b"\xff", at)
                if at < 0 or at + 1 >= size:
                    return None
                following = data[at + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    at += 1 if following == 0xFF else 2
                    continue
                break
    return None


class Frames:
    """The JPEG frames to loop over: a folder's files or an .mjpeg file's parts."""

    def __init__(self, source):
        self._map = None
        self._spans = []  # (start, end) in the .mjpeg file
        self._paths = []  # the folder's JPEGs
        if os.path.isdir(source):
            names = sorted(n for n in os.listdir(source) if n.lower().endswith((".jpg", ".jpeg")))
            self._paths = [os.path.join(source, n) for n in names]
            if not self._paths:
                raise Refused("the folder has no .jpg or .jpeg files")
        else:
            try:
                with open(source, "rb") as file:
                    if os.fstat(file.fileno()).st_size == 0:
                        raise Refused("the file is empty")
                    self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as error:
                raise Refused(f"cannot read it: {error.strerror}") from error
            at = self._map.find(b"\xff\xd8")
            while at >= 0:
                end = jpeg_end(self._map, at)
                if end is None:
                    break  # a cut-off last frame is left out
                self._spans.append((at, end))
                at = self._map.find(b"\xff\xd8", end)
            if not self._spans:
                raise Refused("the file holds no whole JPEG frame")

    def __len__(self):
        return len(self._spans) or len(self._paths)

    def get(self, index):
        if self._spans:
            start, end = self._spans[index]
            return self._map[start:end]
        with open(self._paths[index], "rb") as file:
            return file.read()


class Camera:
    """The stream's clock: frame k is shown from start + k / fps on, looping."""

    def __init__(self, frames, fps):
        self.frames = frames
        self.fps = fps
        self.start = time.monotonic()

    def tick(self):
        return int((time.monotonic() - self.start) * self.fps)

    def wait_for(self, tick):
        delay = self.start + tick / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def frame(self, tick):
        return self.frames.get(tick % len(self.frames))


def handler_for(camera, credentials):
    expected = None
    if credentials is not None:
        expected = "Basic " + base64.b64encode(credentials.encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "mjpeg-server/1"

        def log_message(self, format, *args):  # noqa: A002 - quiet: one line per request is noise
            pass

        def do_GET(self):
            if self.path.split("?", 1)[0] != "/stream":
                self.send_error(404, "the stream is at /stream")
                return
            given = self.headers.get("Authorization", "")
            if expected is not None and not hmac.compare_digest(given.encode(), expected.encode()):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            tick = camera.tick()
            try:
                while True:
                    jpeg = camera.frame(tick)
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                    )
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()
                    # The next frame of the moment: a slow client skips, never queues.
                    tick = max(tick + 1, camera.tick())
                    camera.wait_for(tick)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client went away

    return Handler


def main():
    parser = argparse.ArgumentParser(description="Serve JPEG frames as a looping MJPEG camera.")
    parser.add_argument("source", help="a folder of .jpg files or an .mjpeg file")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (default 8080)")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument("--user", help="require HTTP basic authentication with this user name")
    parser.add_argument("--password", help="and this password")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain")
    parser.add_argument("--tls-key", help="and this PEM private key")
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if not 0 < args.fps <= 1000:
        parser.error("--fps is above 0 and at most 1000")
    if not 0 <= args.port <= 65535:
        parser.error("--port is 0 to 65535")
    if args.user is not None and ":" in args.user:
        parser.error("--user cannot hold ':' (HTTP basic authentication)")

    try:
        frames = Frames(args.source)
    except Refused as refused:
        print(f"mjpeg-server: {args.source}: {refused}", file=sys.stderr)
        return 2
    credentials = None if args.user is None else f"{args.user}:{args.password}"
    camera = Camera(frames, args.fps)
    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(camera, credentials))
    except OSError as error:
        print(f"mjpeg-server: cannot listen on port {args.port}: {error.strerror}", file=sys.stderr)
        return 2
    scheme = "http"
    if args.tls_cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as error:
            print(f"mjpeg-server: cannot load the TLS certificate or key: {error}", file=sys.stderr)
            return 2
        # The handshake runs in the client's own thread, on its first read:
        # a client that never speaks TLS holds up nobody else.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        scheme = "https"
    server.daemon_threads = True
    server.block_on_close = False  # streaming clients never finish by themselves

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
    )
    serving.start()
    print(f"mjpeg-server: {len(frames)} frames at {args.fps:g} fps", file=sys.stderr, flush=True)
    print(f"READY {scheme}://127.0.0.1:{server.server_address[1]}/stream", flush=True)
    while not stop.wait(0.1):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
