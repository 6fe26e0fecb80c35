"""Live cameras: masking, bounded failures, reconnection with backoff; a real RTSP server when installed."""

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from detect.pipeline import Pipeline
from detect.values import Detection
from streams import ReconnectPolicy, SourceError, mask_credentials, open_source, prefetch
from streams.frame import Frame
from streams.rtsp import Capture, RtspSource, default_source_id
from tests.detect.rule_fixtures import make_config

PASSWORD = "s3cr3t-Pa55"
FAST = ReconnectPolicy(
    open_timeout_s=1.0, read_timeout_s=1.0, backoff_initial_s=0.01, backoff_max_s=0.04, max_attempts=3
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "rtsp://admin:12345@10.0.0.5:554/Streaming/Channels/101",
            "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101",
        ),
        ("rtsps://user:p@ss/w0rd@cam.local/live", "rtsps://user:***@cam.local/live"),  # unencoded @ and /
        ("rtsp://admin:@10.0.0.5/live", "rtsp://admin:***@10.0.0.5/live"),
        ("rtsp://viewer@10.0.0.5/live", "rtsp://viewer@10.0.0.5/live"),  # no password
        ("rtsp://10.0.0.5/live?user=a&password=xyz&ch=1", "rtsp://10.0.0.5/live?user=a&password=***&ch=1"),
        (
            "rtsp://10.0.0.5:554/user=admin&pwd=xyz&channel=1",
            "rtsp://10.0.0.5:554/user=admin&pwd=***&channel=1",
        ),
        ("/footage/cam1.mp4", "/footage/cam1.mp4"),
    ],
)
def test_mask_credentials(url: str, masked: str) -> None:
    assert mask_credentials(url) == masked


def test_default_source_id_leaves_out_credentials() -> None:
    assert default_source_id("rtsp://admin:pw@10.0.0.5:554/Streaming/101?x=1") == "10.0.0.5_554_Streaming_101"


def test_reconnect_delays_double_up_to_the_cap() -> None:
    policy = ReconnectPolicy(backoff_initial_s=1, backoff_max_s=30, max_attempts=8)
    assert list(policy.delays()) == [1, 2, 4, 8, 16, 30, 30, 30]


def _assert_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "expected log records"
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()


def test_closed_port_fails_fast_with_the_password_masked(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/live"

    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as error:
        open_source(url, reconnect=FAST)

    assert time.monotonic() - started < 5
    message = str(error.value)
    assert f"rtsp://admin:***@127.0.0.1:{port}/live" in message and PASSWORD not in message
    assert PASSWORD not in capfd.readouterr().err  # nor in what FFmpeg prints
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SourceError, match="within 1 s"):
            open_source(f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/live", reconnect=FAST)
        assert time.monotonic() - started < 4


class ScriptedCamera:
    """A capture that delivers `frames` frames of 8x8 gray, then drops; frames=0 is a failed connect."""

    def __init__(self, frames: int) -> None:
        self.remaining = frames
        self.opened = frames > 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def grab(self) -> bool:
        if self.remaining == 0:
            return False
        self.remaining -= 1
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return True, np.zeros((8, 8, 3), dtype=np.uint8)

    def get(self, prop_id: int) -> float:
        return 8.0

    def release(self) -> None:
        self.released = True


def _scripted(*connections: int) -> tuple[list[ScriptedCamera], Callable[[str, ReconnectPolicy], Capture]]:
    """A connect function that hands out cameras with these frame counts, then only failed connects."""
    made: list[ScriptedCamera] = []
    script = iter(connections)

    def connect(url: str, policy: ReconnectPolicy) -> Capture:
        camera = ScriptedCamera(next(script, 0))
        made.append(camera)
        return camera

    return made, connect


def test_a_dropped_stream_reconnects_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    made, connect = _scripted(5, 0, 3)
    source = RtspSource(f"rtsp://admin:{PASSWORD}@cam.local/live", policy=FAST, connect=connect)

    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        frames = list(source)

    assert time.monotonic() - started < 2
    assert [frame.index for frame in frames] == list(range(8))
    assert all(b.ts >= a.ts for a, b in zip(frames, frames[1:], strict=False))
    assert all(frame.wall_time is not None and frame.wall_time.tzinfo is not None for frame in frames)
    assert {frame.source_id for frame in frames} == {"cam.local_live"}
    # 5 frames, drop, 1 failed + 1 good reconnect, 3 frames, drop, 3 failed reconnects
    assert len(made) == 1 + 2 + 3 and all(camera.released for camera in made)
    assert source.stopped_early is not None
    assert "after 8 frames" in source.stopped_early and "3 reconnect attempts" in source.stopped_early
    _assert_password_never_logged(caplog)
    assert any("rtsp://admin:***@cam.local/live" in record.getMessage() for record in caplog.records)


def test_an_outage_longer_than_allowed_ends_the_source() -> None:
    _, connect = _scripted(2)
    policy = ReconnectPolicy(backoff_initial_s=0.05, backoff_max_s=0.05, max_attempts=None, max_outage_s=0.3)
    source = RtspSource("rtsp://cam.local/live", policy=policy, connect=connect)
    started = time.monotonic()
    assert len(list(source)) == 2
    assert time.monotonic() - started < 1.0
    assert source.stopped_early is not None and "reconnect attempts" in source.stopped_early


def test_a_stream_that_drops_at_once_after_each_reconnect_is_tried_less_and_less_often() -> None:
    """A camera that answers and drops again at once (a failing encoder, a snapshot URL) was
    reconnected every backoff_initial_s for ever, a warning each time: the backoff now goes on
    across such drops, up to backoff_max_s; a stream that stayed up stable_s starts it afresh."""
    connected: list[float] = []

    def connect(url: str, policy: ReconnectPolicy) -> Capture:
        connected.append(time.monotonic())
        return ScriptedCamera(1)  # one frame, then it drops

    policy = ReconnectPolicy(backoff_initial_s=0.05, backoff_max_s=0.4, max_attempts=3, stable_s=5.0)
    source = RtspSource("rtsp://cam.local/live", policy=policy, connect=connect)
    frames = iter(source)
    for _ in range(7):
        next(frames)
    source.close()
    waits = [b - a for a, b in zip(connected, connected[1:], strict=False)]
    expected = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert len(waits) == len(expected)
    assert all(e <= w < e + 0.1 for w, e in zip(waits, expected, strict=True)), waits


class ResizedCamera(ScriptedCamera):
    """A camera whose picture goes from 8x8 to 16x12 (white) after `after` frames, in the same stream."""

    def __init__(self, frames: int, after: int) -> None:
        super().__init__(frames)
        self.after = after

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        if self.remaining >= self.after:
            return True, np.zeros((8, 8, 3), dtype=np.uint8)
        return True, np.full((12, 16, 3), 255, dtype=np.uint8)


def test_a_picture_re_sized_mid_stream_is_scaled_to_the_first_frames_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cameras = iter([ResizedCamera(6, after=3)])
    source = RtspSource(
        "rtsp://cam.local/live", policy=FAST, connect=lambda url, policy: next(cameras, ScriptedCamera(0))
    )
    with caplog.at_level(logging.WARNING):
        frames = list(source)
    assert [frame.image.shape for frame in frames] == [(8, 8, 3)] * 6
    assert [int(frame.image.mean()) for frame in frames] == [0, 0, 0, 255, 255, 255]  # the new picture
    told = [r.getMessage() for r in caplog.records if "16x12" in r.getMessage()]
    assert len(told) == 1 and "rtsp://cam.local/live: the stream's picture is now 16x12, not 8x8" in told[0]


def test_close_from_another_thread_ends_a_waiting_source() -> None:
    _, connect = _scripted(1)
    policy = ReconnectPolicy(backoff_initial_s=30, max_attempts=None, max_outage_s=None)
    source = RtspSource("rtsp://cam.local/live", policy=policy, connect=connect)
    threading.Timer(0.2, source.close).start()
    started = time.monotonic()
    assert len(list(source)) == 1
    assert time.monotonic() - started < 2
    assert source.stopped_early is None  # closed by its user, not lost


# A real camera: GStreamer's RTSP server, run by a system Python with PyGObject (see rtsp_test_server.py).
SERVER_SCRIPT = Path(__file__).with_name("rtsp_test_server.py")


def _system_python_with_rtsp_server() -> str | None:
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if python is None:
        return None
    check = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    found = subprocess.run([python, "-c", check], capture_output=True, timeout=20).returncode == 0
    return python if found else None


@pytest.fixture
def rtsp_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    python = _system_python_with_rtsp_server()
    if python is None:
        pytest.skip(
            "no GStreamer RTSP server (apt: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good)"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [python, str(SERVER_SCRIPT), str(port), "viewer", PASSWORD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        yield f"rtsp://viewer:{PASSWORD}@127.0.0.1:{port}/cam", server
    finally:
        server.kill()
        server.wait(timeout=5)


@pytest.mark.slow
def test_real_rtsp_camera_streams_then_stops_cleanly_when_it_goes_away(
    rtsp_server: tuple[str, subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    url, server = rtsp_server
    policy = ReconnectPolicy(
        open_timeout_s=5, read_timeout_s=1.5, backoff_initial_s=0.1, backoff_max_s=0.2, max_attempts=2
    )
    with caplog.at_level(logging.DEBUG):
        source = open_source(url, reconnect=policy, analysis_fps=5)
        assert (source.info.kind, source.info.width, source.info.height) == ("live", 160, 120)
        assert PASSWORD not in source.info.name

        frames = []
        started = time.monotonic()
        for frame in source:
            frames.append(frame)
            if len(frames) == 5:
                server.kill()  # the camera goes away mid-stream
        elapsed = time.monotonic() - started

    assert len(frames) >= 5
    assert all(b.ts > a.ts for a, b in zip(frames, frames[1:], strict=False))
    assert frames[0].image.shape == (120, 160, 3)
    assert source.stopped_early is not None and "reconnect attempts" in source.stopped_early
    assert elapsed < 15
    _assert_password_never_logged(caplog)


class _StandingCar:
    """A detector that sees one car standing at the same place in the scene (fractions of the picture,
    in the left half), whatever the picture's size."""

    BOX_NORM = (0.1, 0.5, 0.4, 0.9)

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        x1, y1, x2, y2 = self.BOX_NORM
        box = (x1 * width, y1 * height, x2 * width, y2 * height)
        return [Detection(box=box, score=0.9, class_name="car", kind="car")]


@pytest.mark.slow
def test_a_camera_re_sized_in_its_vendors_app_keeps_its_car_at_one_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera re-configured from 160x120 to 320x240 drops its stream and comes back at the new size.
    Its frames were yielded at the new size: a car standing still moved to other pixels, so the rules
    took it for a new car and its dwell started again (the first car left to expire: a parked car's
    incident late, or a second one for the same car). Frames now keep the first frame's size, scaled."""
    from tests.runner.rtsp_kit import RtspCamera

    python = _system_python_with_rtsp_server()
    if python is None:
        pytest.skip("no GStreamer RTSP server (apt: python3-gi gir1.2-gst-rtsp-server-1.0)")
    camera = RtspCamera(python)
    camera.start()
    policy = ReconnectPolicy(
        open_timeout_s=5, read_timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2, max_attempts=20
    )
    frames: list[Frame] = []
    try:
        with caplog.at_level(logging.INFO):
            source = open_source(camera.url, reconnect=policy, analysis_fps=5)
            for frame in source:
                frames.append(frame)
                if len(frames) == 3:
                    camera.stop()
                    camera.size = (320, 240)
                    camera.start()
                if len(frames) == 8:
                    break
            source.close()
    finally:
        camera.stop()

    assert [frame.image.shape for frame in frames] == [(120, 160, 3)] * 8
    assert any("now 320x240, not 160x120" in record.getMessage() for record in caplog.records)
    _assert_password_never_logged(caplog)

    config = make_config(
        categories={
            "illegal_parking": {
                "kinds": ["car"],
                "zone_kind": "no_parking",
                "min_dwell_s": 1.0,
                "min_median_conf": 0.4,
                "min_observations": 3,
                "require_static_camera": False,  # the test pattern's ball moves the picture
            }
        },
        grace_s=60.0,
    )
    pipeline = Pipeline(config, config.cameras[0], detector=_StandingCar(), out_dir=tmp_path, source_id="cam")
    incidents = list(pipeline.process(frames))
    assert len(incidents) == 1  # one car, seen from the first frame to the last
    assert (incidents[0].first_seen_ts, incidents[0].last_seen_ts) == (0.0, round(frames[-1].ts, 3))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("user_part", "path", "reason"),
    [
        (f"viewer:not-{PASSWORD}@", "/cam", "wrong user name or password (the camera answered 401"),
        ("", "/cam", "the camera asks for a user name and password (401 Unauthorized); the URL has none"),
        (
            f"viewer:{PASSWORD}@",
            "/Streaming/Channels/101",
            "no stream at that path on the camera (it answered 404",
        ),
    ],
)
def test_a_camera_that_refuses_the_stream_is_named_with_its_reason(
    rtsp_server: tuple[str, subprocess.Popen[bytes]], user_part: str, path: str, reason: str
) -> None:
    """OpenCV only says it could not open the stream: a wrong password, a mistyped path and a camera
    that is off all read '(refused, unreachable, no answer within 10 s, wrong credentials or path, or
    not a video stream)'. The camera is asked in plain RTSP which it is (a DESCRIBE with the URL's
    credentials), and the camera's state and the runner's log say so, the password masked."""
    url, _ = rtsp_server
    port = url.rsplit(":", 1)[1].split("/")[0]
    wrong = f"rtsp://{user_part}127.0.0.1:{port}{path}"
    started = time.monotonic()
    with pytest.raises(SourceError) as error:
        open_source(wrong, reconnect=FAST)
    message = str(error.value)
    assert message.startswith(f"{mask_credentials(wrong)}: cannot connect: {reason}")
    assert PASSWORD not in message and time.monotonic() - started < 5


def test_nothing_listening_at_an_rtsp_port_is_said_so() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SourceError, match=f"nothing listens at 127.0.0.1:{port} \\(connection refused"):
        open_source(f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/live", reconnect=FAST)


def test_an_rtsp_host_name_that_does_not_resolve_is_said_so() -> None:
    """Before, the system's words: 'camera.invalid:554: Name or service not known'."""
    url = f"rtsp://admin:{PASSWORD}@camera.invalid:554/live"  # .invalid never resolves (RFC 6761)
    with pytest.raises(SourceError) as error:
        open_source(url, reconnect=FAST)
    message = str(error.value)
    assert message.startswith(f"{mask_credentials(url)}: cannot connect: the host name camera.invalid could")
    assert "check the DNS or the camera's address" in message and PASSWORD not in message


class DigestCamera:
    """A camera's RTSP port as Hikvision's answers it: DESCRIBE without credentials or with wrong ones is
    a 401 offering Digest (qop=auth) and Basic; right Digest credentials (checked per RFC 2617) get the
    stream's description (200)."""

    REALM, NONCE = "IP Camera(C1234)", "4d2f1e0a9b"

    def __init__(self, user: str, password: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.user, self.password = user, password
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536).decode()
                ok = self._authorised(request)
                status = "200 OK" if ok else "401 Unauthorized"
                challenge = (
                    f'WWW-Authenticate: Digest realm="{self.REALM}", nonce="{self.NONCE}", qop="auth"\r\n'
                    f'WWW-Authenticate: Basic realm="{self.REALM}"\r\n'
                )
                conn.sendall(f"RTSP/1.0 {status}\r\nCSeq: 1\r\n{'' if ok else challenge}\r\n".encode())

    def _authorised(self, request: str) -> bool:
        import hashlib
        import re

        line = next((x for x in request.split("\r\n") if x.startswith("Authorization: Digest ")), None)
        if line is None:
            return False
        got = dict(re.findall(r'(\w+)="?([^",]*)"?', line.removeprefix("Authorization: Digest ")))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.user}:{self.REALM}:{self.password}")
        ha2 = md5(f"DESCRIBE:{got['uri']}")
        expected = md5(f"{ha1}:{self.NONCE}:{got['nc']}:{got['cnonce']}:auth:{ha2}")
        return got["username"] == self.user and got["response"] == expected

    def close(self) -> None:
        self.listener.close()


def test_a_digest_camera_is_asked_with_digest_credentials() -> None:
    from streams.rtsp_probe import rtsp_refusal

    camera = DigestCamera("admin", "p@ss:w0rd")
    try:
        base = f"127.0.0.1:{camera.port}/Streaming/Channels/101"
        assert rtsp_refusal(f"rtsp://admin:p%40ss%3Aw0rd@{base}", 2.0) is None  # described: not refused
        assert rtsp_refusal(f"rtsp://admin:wrong@{base}", 2.0) == (
            "wrong user name or password (the camera answered 401 Unauthorized)"
        )
    finally:
        camera.close()


class RealTimeCamera(ScriptedCamera):
    """A camera sending `fps` frames a second from when it is opened, whether they are read or not: grab
    takes the oldest frame waiting (in the network's buffers) or waits for the next one; each image
    holds its frame number (pixel (0, 0): high byte, low byte)."""

    def __init__(self, fps: float) -> None:
        super().__init__(10_000)
        self.fps, self.opened_at, self.next = fps, time.monotonic(), 0

    def captured_at(self, number: int) -> float:
        return self.opened_at + number / self.fps

    def grab(self) -> bool:
        time.sleep(max(0.0, self.captured_at(self.next) - time.monotonic()))
        self.next += 1
        return super().grab()

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        image = np.zeros((8, 8, 3), dtype=np.uint8)
        image[0, 0, :2] = divmod(self.next - 1, 256)
        return True, image


def test_a_consumer_slower_than_the_camera_gets_its_newest_frames() -> None:
    """A model shared by many cameras takes 0.25 s a frame of a 20 fps camera. The reader waited for it,
    leaving the stream to queue up in the network's buffers: each frame analysed was older than the
    last (1.5 s behind after 10, minutes after an hour, each frame's time when it was read), the
    street seen ever later. The newest frames are analysed now, those in between skipped."""
    camera = RealTimeCamera(fps=20.0)
    source = RtspSource("rtsp://cam.local/live", policy=FAST, connect=lambda url, policy: camera)
    behind_s = []
    for frame in prefetch(source):
        number = int(frame.image[0, 0, 0]) * 256 + int(frame.image[0, 0, 1])
        behind_s.append(time.monotonic() - camera.captured_at(number))
        if len(behind_s) == 10:
            break
        time.sleep(0.25)  # the model
    source.close()
    assert max(behind_s) < 0.5, behind_s
