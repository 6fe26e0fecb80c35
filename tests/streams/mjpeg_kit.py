"""A real MJPEG camera over HTTP, served from a thread on 127.0.0.1, for the stream tests (test_urls.py)
and the runner's (tests/runner/test_camera.py): MjpegCamera says what it serves, mjpeg_handler serves
it behind basic auth for viewer:PASSWORD, serve_http runs a handler on a free port."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

PASSWORD = "s3cr3t-Pa55"


@dataclass
class MjpegCamera:
    """What the camera serves: connection i gets frames_per_connection[i] JPEGs, then the connection ends;
    connections beyond the script get 503. Every request must carry basic auth for viewer:PASSWORD."""

    frames_per_connection: list[int]
    size: tuple[int, int] = (160, 120)
    fps: float = 20.0
    requests: list[str] = field(default_factory=list)
    authorized: list[bool] = field(default_factory=list)

    def jpeg(self, value: int) -> bytes:
        """A plain grey frame of level `value`, wrapped round at 256 (a uint8 holds no more: the 55th
        frame of a connection, level 40 + 4 * 54, overflowed)."""
        width, height = self.size
        ok, data = cv2.imencode(".jpg", np.full((height, width, 3), value % 256, dtype=np.uint8))
        assert ok
        return data.tobytes()


def mjpeg_handler(camera: MjpegCamera) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"viewer:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            camera.requests.append(self.path)
            if self.headers.get("Authorization") != expected:
                camera.authorized.append(False)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            camera.authorized.append(True)
            connection = sum(camera.authorized) - 1
            if connection >= len(camera.frames_per_connection):
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(camera.frames_per_connection[connection]):
                data = camera.jpeg(40 + 40 * connection + 4 * i)
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                try:
                    self.wfile.write(part + data + b"\r\n")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(1.0 / camera.fps)
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            pass

    return Handler


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """`handler` served on 127.0.0.1 from a thread while the block runs: its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
