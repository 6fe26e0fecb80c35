"""A tiny RTSP camera for tests: GStreamer's RTSP server streaming a test pattern as MJPEG.

Run with a Python that has PyGObject and gst-rtsp-server (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-base, gstreamer1.0-plugins-good), not the project's venv:

    /usr/bin/python3 rtsp_test_server.py PORT USER PASSWORD [WIDTH HEIGHT]

Serves rtsp://USER:PASSWORD@127.0.0.1:PORT/cam (basic auth), 160x120 (or WIDTH x HEIGHT) at 10 fps,
until killed.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={width},height={height},"
    "framerate=10/1 "
    "! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
)


def main() -> None:
    port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
    width, height = sys.argv[4:6] if len(sys.argv) >= 6 else ("160", "120")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)

    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE.format(width=int(width), height=int(height)))
    factory.set_shared(True)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("viewer", "media.factory.access", True)
    permissions.add_permission_for_role("viewer", "media.factory.construct", True)
    factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)

    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
