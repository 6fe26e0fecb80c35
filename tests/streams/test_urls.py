"""Source URLs: which are live, which are remote files, what is masked; a real MJPEG camera over HTTP and a
video file on a web server, both served from a thread on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest

from streams import ReconnectPolicy, SourceError, is_live_url, mask_credentials, open_source
from streams.urls import (
    default_source_id,
    footage_url_problem,
    host_and_port,
    is_remote_file,
    is_secret_key,
    stream_url_problem,
    with_public_stream,
)
from tests.streams.footage import write_video
from tests.streams.mjpeg_kit import PASSWORD, MjpegCamera, mjpeg_handler, serve_http

TOKEN = "t0k3n-Zq9"
FAST = ReconnectPolicy(
    open_timeout_s=2.0, read_timeout_s=2.0, backoff_initial_s=0.05, backoff_max_s=0.1, max_attempts=2
)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        # userinfo: the user is kept, the password is not, whatever the scheme
        ("rtsp://admin:12345@10.0.0.5:554/live", "rtsp://admin:***@10.0.0.5:554/live"),
        ("http://admin:12345@cam.local/video.mjpg", "http://admin:***@cam.local/video.mjpg"),
        ("https://u:p@ss/w@cdn.example.com/live.m3u8", "https://u:***@cdn.example.com/live.m3u8"),
        ("rtmp://pub:pw@live.example.com/app/cam1", "rtmp://pub:***@live.example.com/app/cam1"),
        ("srt://u:pw@10.0.0.5:9000", "srt://u:***@10.0.0.5:9000"),
        ("http://viewer@cam.local/video.mjpg", "http://viewer@cam.local/video.mjpg"),  # no password
        # a password typed with '#', '?', '/' or '[' unencoded: a URL parser's host would be part of it
        ("rtsp://admin:20240#@10.0.0.9/live", "rtsp://admin:***@10.0.0.9/live"),
        ("rtsp://admin:se?cr#et@10.0.0.9:554/live", "rtsp://admin:***@10.0.0.9:554/live"),
        ("rtsp://admin:135/79@[fe80::1]:554/live", "rtsp://admin:***@[fe80::1]:554/live"),
        ("rtsp://[admin:pw]@10.0.0.9/live", "rtsp://[admin:***@10.0.0.9/live"),
        ("rtsp://h/live?token=ab@cd&ch=1", "rtsp://h/live?token=***&ch=1"),  # an '@' in a query value
        # every secret-looking query key, in any case
        ("rtsp://h/live?password=x&ch=1", "rtsp://h/live?password=***&ch=1"),
        ("rtsp://h/live?user=a&passwd=x", "rtsp://h/live?user=a&passwd=***"),
        ("rtsp://h/live?PWD=x", "rtsp://h/live?PWD=***"),
        ("rtsp://h/live?pass=x", "rtsp://h/live?pass=***"),
        ("http://h/video.mjpg?token=x&fps=5", "http://h/video.mjpg?token=***&fps=5"),
        ("https://h/live.m3u8?access_token=a/b+c==", "https://h/live.m3u8?access_token=***"),
        ("http://h/live.flv?auth_key=1700000000-0-0-abcdef", "http://h/live.flv?auth_key=***"),
        ("http://h/live.flv?key=x", "http://h/live.flv?key=***"),
        (
            "http://h/s?auth=x&secret=y&Signature=z&sig=w",
            "http://h/s?auth=***&secret=***&Signature=***&sig=***",
        ),
        ("http://h/s?apikey=x&api_key=y&API-Key=z", "http://h/s?apikey=***&api_key=***&API-Key=***"),
        (
            "http://h/s?session=x&SessionId=y&credential=z",
            "http://h/s?session=***&SessionId=***&credential=***",
        ),
        (
            "http://h/s?refresh_token=x&stream_key=y&client_secret=z",
            "http://h/s?refresh_token=***&stream_key=***&client_secret=***",
        ),
        ("rtmp://h/live/cam?txSecret=x&txTime=65f0", "rtmp://h/live/cam?txSecret=***&txTime=65f0"),
        (
            "https://b/x.m3u8?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://b/x.m3u8?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
        ("srt://h:9000?streamid=cam1&passphrase=longsecret", "srt://h:9000?streamid=cam1&passphrase=***"),
        # names that only look alike stay
        (
            "http://h/s?monkey=1&keyframes=2&channel=3&subtype=0",
            "http://h/s?monkey=1&keyframes=2&channel=3&subtype=0",
        ),
        # fragments, path parameters, Dahua-style paths
        ("https://h/live.m3u8#access_token=x", "https://h/live.m3u8#access_token=***"),
        ("http://h/live;password=x;ch=1/video.mjpg", "http://h/live;password=***;ch=1/video.mjpg"),
        ("rtsp://h:554/user=admin&pwd=x&channel=1", "rtsp://h:554/user=admin&pwd=***&channel=1"),
        ("rtsp://h/live?token=", "rtsp://h/live?token="),  # nothing to hide
        # Xiongmai/XMEye paths join their parameters with '_'
        (
            "rtsp://10.0.0.9:554/user=admin_password=XmS3cret_channel=1_stream=0.sdp",
            "rtsp://10.0.0.9:554/user=admin_password=***_channel=1_stream=0.sdp",
        ),
        ("rtsp://h/live_stream=1_channel=2", "rtsp://h/live_stream=1_channel=2"),
        # all at once
        (
            "rtsp://admin:pw@h/live;pass=x?token=y#sig=z",
            "rtsp://admin:***@h/live;pass=***?token=***#sig=***",
        ),
        # paths are left alone
        ("/footage/cam1.mp4", "/footage/cam1.mp4"),
        ("footage/user=admin&pwd=x.mp4", "footage/user=admin&pwd=x.mp4"),
    ],
)
def test_mask_credentials(url: str, masked: str) -> None:
    assert mask_credentials(url) == masked


@pytest.mark.parametrize(
    ("url", "shown", "problem"),
    [
        ("rtsp://admin:pw@cam.local:554/Streaming/Channels/101", "cam.local:554", None),
        ("rtsp://admin:p@ss@10.0.0.9/live", "10.0.0.9", None),  # FFmpeg takes the last '@' before '/'
        ("rtsp://u:p@[fe80::1]:8554/live", "[fe80::1]:8554", None),
        ("rtsp://h/live?token=ab@cd", "h", None),
        ("rtsp://admin:20240#@10.0.0.9/live", "10.0.0.9", "an '@' after the host"),
        ("rtsp://admin:135/79@10.0.0.9/live", "10.0.0.9", "an '@' after the host"),
        ("rtsp://[admin:pw]@10.0.0.9/live", "10.0.0.9", "not a valid URL"),
        ("rtsp://cam:99999/live", "cam:99999", "not a valid URL"),
        ("rtsp://u:p@/live", None, "has no host"),
        ("rtsp://cam/li ve", "cam", "a space or a control character"),
        ("file:///etc/passwd", None, "cannot read file:// URLs (only http, https,"),
        ("rstp://cam/live", "cam", "cannot read rstp:// URLs"),
        ("http://cdn.example.com/day1.mp4", "cdn.example.com", "footage, not a live stream"),
    ],
)
def test_what_a_stream_url_shows_and_whether_a_camera_can_use_it(
    url: str, shown: str | None, problem: str | None
) -> None:
    assert host_and_port(url) == shown
    found = stream_url_problem(url)
    assert (found is None) if problem is None else (found is not None and problem in found), found
    assert found is None or "pw" not in found and "20240" not in found


def test_mask_credentials_finds_every_url_in_a_message() -> None:
    message = (
        f"failed: rtsp://admin:{PASSWORD}@h/live: cannot connect; "
        f"then http://h/video.mjpg?token={TOKEN} (HTTP 401) at /data/x.mp4"
    )
    assert mask_credentials(message) == (
        "failed: rtsp://admin:***@h/live: cannot connect; "
        "then http://h/video.mjpg?token=*** (HTTP 401) at /data/x.mp4"
    )


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        *[(k, True) for k in ("password", "Token", "ACCESS_TOKEN", "auth_key", "key", "sig", "apiKey")],
        *[
            (k, True)
            for k in ("id_token", "stream_key", "app_secret", "streamKey", "x-api-key", "JSESSIONID")
        ],
        *[
            (k, False)
            for k in ("user", "username", "channel", "keyframes", "monkey", "passage", "sign_in_at")
        ],
    ],
)
def test_which_parameter_names_are_secret(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("source", "live"),
    [
        ("rtsp://10.0.0.5/live", True),
        ("RTSPS://10.0.0.5/live", True),
        ("rtmp://live.example.com/app/cam1", True),
        ("rtmps://live.example.com/app/cam1", True),
        ("http://10.0.0.5/video.mjpg", True),  # MJPEG
        ("http://10.0.0.5/cgi-bin/mjpg/video.cgi?channel=1", True),
        ("https://cdn.example.com/live/cam1.m3u8?token=x", True),  # HLS
        ("http://cdn.example.com/live/cam1.flv", True),  # HTTP-FLV
        ("http://10.0.0.5:8000/stream.ts", True),  # MPEG-TS over HTTP
        ("srt://10.0.0.5:9000?streamid=cam1", True),
        ("udp://239.0.0.1:1234", True),
        ("rtp://239.0.0.1:5004", True),
        ("tcp://10.0.0.5:5000", True),
        # files: on a web server they are read once, like a local file
        ("https://files.example.com/clips/cam1.mp4?sig=x", False),
        ("http://files.example.com/clips/cam1.MKV", False),
        ("/footage/cam1.mp4", False),
        ("footage/frames", False),
        ("C:\\footage\\cam1.mp4", False),
        ("file:///footage/cam1.mp4", False),
        ("ftp://files.example.com/cam1.mp4", False),
    ],
)
def test_which_sources_are_live(source: str, live: bool) -> None:
    assert is_live_url(source) is live


def test_remote_files_are_http_urls_of_video_files() -> None:
    assert is_remote_file("https://h/clips/cam1.mp4?sig=x")
    assert not is_remote_file("https://h/live/cam1.m3u8")
    assert not is_remote_file("rtmp://h/app/cam1.mp4")  # RTMP is always a stream
    assert not is_remote_file("/footage/cam1.mp4")


@pytest.mark.parametrize(
    ("url", "source_id"),
    [
        ("rtsp://admin:pw@10.0.0.5:554/Streaming/101?x=1", "10.0.0.5_554_Streaming_101"),
        ("rtsp://10.0.0.5:554/user=admin&pwd=xyz&channel=1", "10.0.0.5_554_user_admin_channel_1"),
        ("http://h/live;token=xyz/cam.m3u8#sig=1", "h_live_cam.m3u8"),
    ],
)
def test_default_source_id_leaves_out_secrets(url: str, source_id: str) -> None:
    assert default_source_id(url) == source_id


def _free_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        f"http://admin:{PASSWORD}@127.0.0.1:{{port}}/video.mjpg?token={TOKEN}",
        f"rtmp://127.0.0.1:{{port}}/live/cam1?txSecret={TOKEN}",
        f"https://127.0.0.1:{{port}}/live/cam1.m3u8;auth_key={TOKEN}",
    ],
)
def test_an_unreachable_stream_is_a_masked_connect_error(
    url: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    url = url.format(port=_free_port())
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as error:
        open_source(url, reconnect=FAST)

    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "cannot connect" in message and mask_credentials(url) in message
    assert PASSWORD not in message and TOKEN not in message
    err = capfd.readouterr().err  # nor in what FFmpeg prints
    assert PASSWORD not in err and TOKEN not in err
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and TOKEN not in record.getMessage()


def test_a_url_of_another_scheme_is_named_and_masked() -> None:
    with pytest.raises(SourceError) as error:
        open_source(f"ftp://admin:{PASSWORD}@files.example.com/cam1.mp4")
    message = str(error.value)
    assert "ftp://admin:***@files.example.com/cam1.mp4: cannot read ftp:// URLs" in message
    assert "rtsp" in message and PASSWORD not in message


@pytest.mark.parametrize(
    ("url", "named"),
    [
        # a '#' in the password: FFmpeg would look for the stream at a host named "admin"
        (f"rtsp://admin:pa#{PASSWORD}@127.0.0.1:1/live", "rtsp://admin:***@127.0.0.1:1/live: an '@' after"),
        (f"rtsp://admin:{PASSWORD}@127.0.0.1:99999/live", "rtsp://admin:***@127.0.0.1:99999/live: not a"),
        (f"http://u:{PASSWORD}@127.0.0.1:99999/day1.mp4", "http://u:***@127.0.0.1:99999/day1.mp4: not a"),
    ],
)
def test_a_misshapen_url_is_named_and_masked_before_connecting(url: str, named: str) -> None:
    """Worded as the API refuses a camera's stream URL (url_error); before, FFmpeg was asked to connect
    to what it made of it, and the error said only "cannot connect"."""
    with pytest.raises(SourceError) as error:
        open_source(url, reconnect=FAST)
    assert str(error.value).startswith(named) and PASSWORD not in str(error.value)


def test_footage_urls_are_checked_as_stream_urls_but_may_name_a_video_file() -> None:
    assert footage_url_problem("http://cdn.example.com/day1.mp4") is None
    assert stream_url_problem("http://cdn.example.com/day1.mp4") is not None
    for url in ("rtsp://admin:20240#@10.0.0.9/live", "rtsp://cam/li ve", "file:///etc/passwd"):
        assert footage_url_problem(url) == stream_url_problem(url) is not None


# --- a real MJPEG camera over HTTP --------------------------------------------------------------------------


@pytest.fixture
def mjpeg_camera() -> Iterator[tuple[str, MjpegCamera]]:
    camera = MjpegCamera(frames_per_connection=[6, 4])
    with serve_http(mjpeg_handler(camera)) as port:
        yield f"http://viewer:{PASSWORD}@127.0.0.1:{port}/video.mjpg?channel=1&token={TOKEN}", camera


def test_an_http_mjpeg_camera_is_read_live_and_reconnected(
    mjpeg_camera: tuple[str, MjpegCamera], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    url, camera = mjpeg_camera
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        source = open_source(url, reconnect=FAST)
        assert (source.info.kind, source.info.width, source.info.height) == ("live", 160, 120)
        assert source.info.frame_count is None
        assert source.info.name == mask_credentials(url)
        assert source.source_id == "127.0.0.1_" + url.rsplit(":", 1)[1].split("?")[0].replace("/", "_")
        frames = list(source)
    elapsed = time.monotonic() - started

    # 6 frames, the camera drops, one reconnect gives 4 more, then 503s until the policy gives up
    assert len(frames) == 10, [frame.index for frame in frames]
    assert [frame.index for frame in frames] == list(range(10))
    assert all(b.ts >= a.ts for a, b in zip(frames, frames[1:], strict=False))
    assert all(frame.wall_time is not None for frame in frames)
    levels = [int(frame.image.mean().round()) for frame in frames]
    assert levels == pytest.approx([40 + 4 * i for i in range(6)] + [80 + 4 * i for i in range(4)], abs=3)
    assert source.stopped_early is not None and "after 10 frames" in source.stopped_early
    assert "2 reconnect attempts" in source.stopped_early
    assert all(path == "/video.mjpg?channel=1&token=" + TOKEN for path in camera.requests)
    assert sum(camera.authorized) == 4  # 2 streams + 2 refused reconnects, each after a 401 challenge
    assert elapsed < 10

    logged = [record.getMessage() for record in caplog.records]
    assert any("reconnected" in message for message in logged)
    assert any(mask_credentials(url) in message for message in logged)
    err = capfd.readouterr().err
    for text in [*logged, err]:
        assert PASSWORD not in text and TOKEN not in text


def test_a_video_file_on_a_web_server_is_read_once_by_its_container_clock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_video(tmp_path / "clip.avi", frame_count=30, fps=10.0)

    class Files(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            pass

    with serve_http(Files) as port:
        url = f"http://127.0.0.1:{port}/clip.avi?sig={TOKEN}"
        with caplog.at_level(logging.DEBUG):
            source = open_source(url, analysis_fps=5, reconnect=FAST)
            assert (source.info.kind, source.info.frame_count, source.info.fps) == ("video", 30, 10.0)
            assert source.info.name == f"http://127.0.0.1:{port}/clip.avi?sig=***"
            frames = list(source)

        assert [frame.index for frame in frames] == list(range(0, 30, 2))
        assert [frame.ts for frame in frames] == pytest.approx([i * 0.2 for i in range(15)])
        assert {frame.source_id for frame in frames} == {"clip"}
        assert source.stopped_early is None
        assert all(TOKEN not in record.getMessage() for record in caplog.records)

        missing = f"http://127.0.0.1:{port}/gone.mp4?sig={TOKEN}"
        with pytest.raises(SourceError) as error:
            open_source(missing, reconnect=FAST)
        assert str(error.value).startswith(f"http://127.0.0.1:{port}/gone.mp4?sig=***: cannot be read")
        assert TOKEN not in str(error.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:pw-1@cam.local:554/live", "rtsp://admin:***@cam.local:554/live"),
        ("rtsp://cam.local/live?token=pw-2", "rtsp://cam.local/live?token=***"),
        # masking takes a URL to end at a space: one holding a space is named by scheme and host alone
        ("rtsp://admin:pw 3@cam.local/live", "rtsp://cam.local"),
        ("rtsp://admin:pw-4@cam.local/li\tve", "rtsp://cam.local"),
        ("rtsp://pw 5@/live", "rtsp://(no host)"),
        # no '@' before the host: the password reads as a port that is no number
        ("rtsp://admin:pw-6/live", "rtsp://(no host)"),
        ("rtsp://admin:pw-7", "rtsp://(no host)"),
        ("rtsp://admin:pw-8@", "rtsp://(no host)"),
        ("rtsp://admin:20240#@10.0.0.9/live", "rtsp://admin:***@10.0.0.9/live"),
        ("file:///srv/footage/day1.mp4", "file:///srv/footage/day1.mp4"),
    ],
)
def test_a_url_an_error_names_shows_no_secret(url: str, shown: str) -> None:
    from streams.urls import shown_url, url_error

    assert shown_url(url) == shown
    assert url_error(url, "the reason") == f"{shown}: the reason"


@pytest.mark.parametrize(
    ("text", "url", "shown"),
    [
        (  # as a runner words it: masked
            "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101?token=***: cannot connect",
            "rtsp://admin:pw@10.0.0.5:554/Streaming/Channels/101?token=t0k",
            "rtsp://10.0.0.5:554: cannot connect",
        ),
        (
            "open rtsp://admin:pw@cam/live failed",
            "rtsp://admin:pw@cam/live",
            "open rtsp://cam failed",
        ),  # as given
        (
            "no frame (rtsp://cam:554)",
            "rtsp://admin:pw@cam:554/live",
            "no frame (rtsp://cam:554)",
        ),  # already so
        ("rtsp://other/x: refused", "rtsp://admin:pw@cam/live", "rtsp://other/x: refused"),  # another stream
    ],
)
def test_an_error_names_its_camera_s_stream_as_responses_do(text: str, url: str, shown: str) -> None:
    assert with_public_stream(text, url) == shown
