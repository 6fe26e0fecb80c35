"""Live cameras for benchmarks/cameras.py: GStreamer's RTSP server playing a folder of JPEG frames as
MJPEG, looped for ever, in real time at FPS, on COUNT mounts (/cam0 ... /cam<COUNT-1>),
each mount its own stream (its own pipeline), as separate cameras are.

Run with a Python that has PyGObject and gst-rtsp-server (Debian: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good), not the venv:

    /usr/bin/python3 rtsp_clip_server.py PORT FRAMES_DIR FPS COUNT

Prints "ready" once it listens on 127.0.0.1:PORT; serves until killed.
"""

import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, folder, fps, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    Gst.init(None)
    frames = [Gst.Buffer.new_wrapped(path.read_bytes()) for path in sorted(folder.glob("*.jpg"))]
    if not frames:
        sys.exit(f"no JPEG frames in {folder}")
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    launch = (
        f"( appsrc name=src is-live=true format=time caps=image/jpeg,framerate={fps}/1 "
        "! jpegparse ! rtpjpegpay name=pay0 pt=26 )"
    )

    def configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        """Push the clip's frames into this mount's stream in real time, looped, while it plays."""
        source = media.get_element().get_child_by_name("src")
        sent = [0]

        def push() -> bool:
            n = sent[0]
            buffer = frames[n % len(frames)].copy()
            buffer.pts = buffer.dts = n * Gst.SECOND // fps
            buffer.duration = Gst.SECOND // fps
            sent[0] += 1
            return source.emit("push-buffer", buffer) == Gst.FlowReturn.OK  # False: the stream ended

        GLib.timeout_add(max(1, 1000 // fps), push)

    for n in range(count):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.connect("media-configure", configure)
        server.get_mount_points().add_factory(f"/cam{n}", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
