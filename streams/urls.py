"""Source URLs: which ones are live streams, which are files on a web server, and how to show any of them
without its secrets.

Live: every scheme OpenCV's FFmpeg backend reads as a stream (LIVE_SCHEMES): RTSP, RTMP, HTTP(S) (MJPEG,
HLS .m3u8, HTTP-FLV, MPEG-TS), SRT, UDP, RTP, TCP. They are read by `streams.rtsp.LiveSource`, with its
timeouts and reconnect backoff, and timed by the clock they arrive on.

A remote file: an http(s) URL whose path ends in a video file suffix (REMOTE_FILE_SUFFIXES: .mp4, .mkv,
...) is footage stored on a web server, not a stream: it is read once, front to back, timed by its
container like a local file. Read as a live stream it would be timed by how fast it downloads and, at its
end, "reconnected" and replayed. .flv and .ts are left out on purpose: over HTTP they are the usual live
forms (HTTP-FLV, MPEG-TS), and so are read live.

Masking: `mask_credentials` is the one function that makes a source URL (or any text holding URLs) fit to
log, show or store.
"""

from __future__ import annotations

import re
from posixpath import splitext
from urllib.parse import urlsplit

# The protocols FFmpeg reads as a stream; HLS is http(s) with an .m3u8 playlist. srt:// needs an FFmpeg built
# with libsrt (the opencv-python wheel's is not: there an srt:// camera fails to connect).
LIVE_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "rtmpts", "http", "https", "srt", "udp", "rtp", "tcp"}
)
HTTP_SCHEMES = frozenset({"http", "https"})
REMOTE_FILE_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".mpg", ".mpeg"})

MASK = "***"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A URL inside free text runs from its scheme to the next whitespace.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
# key=value in a path (Dahua-style /user=admin&password=x/, ;password=x path parameters) ...
_PATH_PARAM = re.compile(r"(?<=[/;&])([^/;&?#=\s]+)=([^/;&?#]*)")
# ... and in a query or fragment (?token=x&a=b, #access_token=x); values may hold '/'.
# ... and in Xiongmai/XMEye-style paths, whose parameters are joined by '_' (common on Chinese DVRs:
# /user=admin_password=x_channel=1_stream=0.sdp); a value runs to the next "_name=" or separator.
_UNDERSCORE_PARAM = re.compile(r"(?<=_)([A-Za-z]+)=(.*?)(?=_[A-Za-z]+=|[/;&?#]|$)")
_QUERY_PARAM = re.compile(r"(?<=[?#&;])([^?#&;=\s]+)=([^&;#]*)")

# Query keys whose values are secrets, compared lower-case ...
_SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "token",
        "access_token",
        "auth",
        "auth_key",
        "authkey",
        "key",
        "secret",
        "signature",
        "sig",
        "sign",
        "apikey",
        "api_key",
        "session",
        "sessionid",
        "session_id",
        "sessid",
        "credential",
        "credentials",
    }
)
# ... keys ending in one of these (accessToken, txSecret, X-Amz-Signature, JSESSIONID) ...
_SECRET_ENDINGS = (
    "token",
    "secret",
    "signature",
    "password",
    "passwd",
    "credential",
    "credentials",
    "sessionid",
)
# ... and keys whose last word is one of these (stream_key, api-key, streamKey, url.sig).
_SECRET_LAST_WORDS = frozenset({"key", "sig", "pwd", "pass", "auth", "session"})
_WORD_BREAK = re.compile(r"[_.\-]|(?<=[a-z0-9])(?=[A-Z])")
# A host and port as a URL gives them: a name or IPv4 address, or an IPv6 one in brackets; then the end
# or a '/', '?' or '#'.
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(?::\d*)?(?=[/?#]|$)")


def url_scheme(text: str) -> str | None:
    """The lower-case scheme of a URL ("rtsp", "https"), or None for a path."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def is_remote_file(url: str) -> bool:
    """Whether an http(s) URL names a video file on a web server (see the module's docstring)."""
    if url_scheme(url) not in HTTP_SCHEMES:
        return False
    path = urlsplit(url).path.split(";", 1)[0]
    return splitext(path)[1].lower() in REMOTE_FILE_SUFFIXES


def is_live_url(text: str) -> bool:
    """Whether a source is a live stream, to be read with reconnects: a URL with one of LIVE_SCHEMES,
    except an http(s) URL of a video file. A path (even a missing one) is never live."""
    return url_scheme(text) in LIVE_SCHEMES and not is_remote_file(text)


def is_secret_key(key: str) -> bool:
    """Whether a URL parameter's name says its value is a secret (password, token, key, signature, ...)."""
    lowered = key.lower()
    if lowered in _SECRET_KEYS or lowered.endswith(_SECRET_ENDINGS):
        return True
    return _WORD_BREAK.split(key)[-1].lower() in _SECRET_LAST_WORDS


def _mask_param(match: re.Match[str]) -> str:
    key, value = match.group(1), match.group(2)
    return f"{key}={MASK}" if value and is_secret_key(key) else match.group(0)


def _userinfo_end(rest: str) -> int:
    """Where the userinfo of a URL's text after '://' ends: its last '@' that a host (and port) follows,
    up to the end or a '/', '?' or '#'; -1 when there is none. Not the first '/', '?' or '#' as a URL
    parser reads it: a password typed with one of them unencoded (admin:pa#ss@cam) would then be the host
    and port of what a parser shows. An '@' after the parser's host counts when a ':' comes before it
    (user:password): one in a path or query that a host-like word follows is then taken for it too,
    masking too much, the safe side."""
    authority = len(re.split(r"[/?#]", rest, maxsplit=1)[0])
    for match in reversed(list(re.finditer("@", rest))):
        if _HOST_PORT.match(rest, match.end()):
            return match.start() if match.start() < authority or ":" in rest[: match.start()] else -1
    return -1


def host_and_port(url: str) -> str | None:
    """A URL's host[:port] as a stream shows it, never any of its userinfo (_userinfo_end); None when
    the text after '://' holds no host that can be shown."""
    rest = url.partition("://")[2]
    match = _HOST_PORT.match(rest, _userinfo_end(rest) + 1)
    return match.group(0) if match and match.group(0) else None


def public_stream(url: str) -> str:
    """What a response may show of a stream URL: scheme://host[:port], nothing that can carry a secret
    (no user name or password, even one typed with '#', '/' or '[' unencoded: streams.urls.host_and_port)."""
    scheme = url_scheme(url)
    host = host_and_port(url) if scheme else None
    if scheme is None or host is None:
        return "(a file or device path)" if scheme is None else f"{scheme}://(no host)"
    return f"{scheme}://{host}"


def with_public_stream(text: str, url: str) -> str:
    """`text` (an error about the stream at `url`) with that URL named as responses name it
    (public_stream): in every form a runner or a source words it, as given, masked (mask_credentials)
    or as an error names it (shown_url), so that its user name and path show no more than its password."""
    public = public_stream(url)
    forms = {url, mask_credentials(url), mask_credentials(mask_credentials(url)), shown_url(url), public}
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True) if form)
    return re.sub(pattern, lambda _: public, text)


def stream_url_problem(url: str) -> str | None:
    """Why `url` cannot be a live camera's stream URL, in words that do not repeat it (it may hold a
    password); None when it can. FFmpeg reads the host as a URL parser does, up to the first '/', '?'
    or '#': a user name or password that holds one of them (or '@', '[', ']') must be percent-encoded,
    or the stream is looked for at a host named after the user."""
    return _url_problem(url, remote_file_ok=False)


def footage_url_problem(url: str) -> str | None:
    """Why `url` cannot be read as footage (`gridpatrol detect`'s input, streams.open_source): checked as
    stream_url_problem checks a camera's, except that the http(s) URL of a video file is read too."""
    return _url_problem(url, remote_file_ok=True)


def _url_problem(url: str, *, remote_file_ok: bool) -> str | None:
    if re.search(r"[\x00-\x20\x7f]", url):
        return "holds a space or a control character"
    scheme = url_scheme(url)
    if scheme not in LIVE_SCHEMES:
        return unreadable_scheme(scheme)
    if is_remote_file(url) and not remote_file_ok:
        return "an http(s) URL of a video file is footage, not a live stream: upload it instead"
    rest = url.partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    encode = (
        "percent-encode '/', '?', '#', '@', '[' and ']' in the user name and password "
        "(%2F %3F %23 %40 %5B %5D)"
    )
    if _userinfo_end(rest) >= len(authority):
        return f"an '@' after the host: {encode}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises for a port that is not a number up to 65535)
    except ValueError:
        return f"not a valid URL ({encode}; a port is a number up to 65535)"
    if not parts.hostname:
        return "has no host"
    return None


def unreadable_scheme(scheme: str | None) -> str:
    """The reason a URL of another scheme than LIVE_SCHEMES (ftp://, file://) is refused, the same for a
    camera's stream URL and `gridpatrol detect`'s input."""
    readable = ", ".join(sorted(LIVE_SCHEMES))
    return f"cannot read {scheme or 'such'}:// URLs (only {readable})"


def shown_url(url: str) -> str:
    """A source URL as an error names it: without its secrets (mask_credentials). Masking finds a
    password by the URL's shape, so one it cannot read is named by its scheme and host alone: a URL with
    a space or a control character (masking takes it to end there: a password typed with a space would
    show), or one whose host part is no host[:port] (rtsp://admin:pw/live, the '@' left out)."""
    rest = url.partition("://")[2]
    host = host_and_port(url)
    bare = re.split(r"[/?#]", rest, maxsplit=1)[0] == ""  # file:///path: no host, nothing to hide there
    if re.search(r"[\x00-\x20\x7f]", url) or (host is None and not bare):
        return f"{url_scheme(url) or '?'}://{host or '(no host)'}"
    return mask_credentials(url)


def url_error(url: str, reason: str) -> str:
    """How every part of gridpatrol words a source URL it cannot use (the API and `gridpatrol camera add`
    for a camera's stream URL, `gridpatrol detect`, a runner): "<the URL, shown_url>: <reason>"."""
    return f"{shown_url(url)}: {reason}"


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    at = _userinfo_end(rest)
    if at >= 0 and ":" in rest[:at]:
        user = rest[:at].split(":", 1)[0]
        rest = f"{user}:{MASK}{rest[at:]}"
    split_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    path, query = rest[:split_at], rest[split_at:]
    path = _UNDERSCORE_PARAM.sub(_mask_param, _PATH_PARAM.sub(_mask_param, path))
    query = _QUERY_PARAM.sub(_mask_param, query)
    return f"{scheme}{sep}{path}{query}"


def mask_credentials(text: str) -> str:
    """`text` with every URL's secrets replaced by ***: a password in the userinfo (the user is kept:
    rtsp://admin:***@cam/live), and the value of every parameter whose name looks secret (is_secret_key) in
    the query, the fragment, path parameters (;password=) and Dahua-style paths (/user=admin&pwd=***&...).

    `text` may be a bare URL, a path (returned as it is) or a message holding URLs anywhere, each running to
    the next whitespace. Use it on every log line, error and stored record that may carry a source URL.
    """
    return _URL_IN_TEXT.sub(lambda match: _mask_url(match.group(0)), text)


def default_source_id(url: str) -> str:
    """A file-name-safe id from the URL's host and path, without credentials: cam.local_554_stream1."""
    rest = mask_credentials(url).partition("://")[2]
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    host_and_path = rest[rest.rfind("@") + 1 :]
    host_and_path = re.sub(r"[^/;&]+=" + re.escape(MASK), "", host_and_path)  # no masked parameters
    return re.sub(r"[^A-Za-z0-9.-]+", "_", host_and_path).strip("_") or url_scheme(url) or "live"
