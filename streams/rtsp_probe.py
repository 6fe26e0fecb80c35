"""Why an RTSP camera would not give its stream, asked in plain RTSP: OpenCV's FFmpeg backend says only
that it could not open it, and a wrong password, a mistyped path and a camera that is off all read the
same. One DESCRIBE (RFC 2326), answered with the URL's credentials (Basic or Digest, RFC 2617) when the
camera asks for them, tells which."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import time
from urllib.parse import unquote, urlsplit, urlunsplit

_STATUS = re.compile(rb"RTSP/\d\.\d (\d{3})")
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')
_MAX_ANSWER = 65536


def rtsp_refusal(url: str, timeout_s: float) -> str | None:
    """Why the rtsp:// camera at `url` refuses its stream, in words that hold none of the URL's secrets:
    its host name does not resolve, nothing listens at its port, wrong user name or password (401 after
    the credentials were sent), no such path (404); None when that is not found out (another scheme, no
    answer within timeout_s in all, the camera describes the stream: the failure is elsewhere, an answer
    not understood)."""
    deadline = time.monotonic() + timeout_s
    try:
        parts = urlsplit(url)
        port = parts.port or 554
    except ValueError:  # a URL streams.urls would have refused: nothing to ask
        return None
    host = parts.hostname
    if parts.scheme.lower() != "rtsp" or not host:
        return None
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = shown if parts.port else (f"[{host}]" if ":" in host else host)
    target = urlunsplit(("rtsp", netloc, parts.path or "/", parts.query, ""))
    try:
        status, challenges = _describe(host, port, target, None, deadline)
        if status == 401 and parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
            answer = _authorization(challenges, user, password, target)
            if answer is None:
                return None
            status, _ = _describe(host, port, target, answer, deadline)
    except socket.gaierror:  # the system's "host:554: Name or service not known" names no fix
        return f"the host name {host} could not be resolved (check the DNS or the camera's address)"
    except ConnectionRefusedError:
        return f"nothing listens at {shown} (connection refused: a wrong port, or the camera's RTSP is off)"
    except TimeoutError:
        return None
    except OSError as exc:
        return f"{shown}: {exc.strerror or type(exc).__name__}"
    if status == 401:
        if parts.username is None:
            return "the camera asks for a user name and password (401 Unauthorized); the URL has none"
        return "wrong user name or password (the camera answered 401 Unauthorized)"
    if status == 403:
        return "this user may not view the stream (the camera answered 403 Forbidden)"
    if status == 404:
        return "no stream at that path on the camera (it answered 404 Not Found): check the URL's path"
    return None


def _describe(
    host: str, port: int, target: str, authorization: str | None, deadline: float
) -> tuple[int | None, list[str]]:
    """One DESCRIBE on a connection of its own (a camera may close it after a 401): the answer's status
    and its WWW-Authenticate challenges; TimeoutError past `deadline` (time.monotonic)."""

    def left_s() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    lines = [f"DESCRIBE {target} RTSP/1.0", "CSeq: 1", "Accept: application/sdp", "User-Agent: gridpatrol"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=left_s()) as sock:
        sock.settimeout(left_s())
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and len(answer) < _MAX_ANSWER:
            sock.settimeout(left_s())
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0]
    match = _STATUS.match(head)
    challenges = [
        line.split(":", 1)[1].strip()
        for line in head.decode("latin-1").split("\r\n")[1:]
        if line.lower().startswith("www-authenticate:")
    ]
    return (int(match.group(1)) if match else None), challenges


def _authorization(challenges: list[str], user: str, password: str, target: str) -> str | None:
    """The Authorization header answering the camera's challenge: Digest (MD5) when offered, else Basic;
    None for a scheme this does not speak."""
    for challenge in challenges:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() != "digest":
            continue
        params = {key.lower(): quoted or bare for key, quoted, bare in _PARAM.findall(rest)}
        if params.get("algorithm", "MD5").upper() != "MD5" or "nonce" not in params:
            continue
        realm, nonce = params.get("realm", ""), params["nonce"]
        ha1 = _md5(f"{user}:{realm}:{password}")
        ha2 = _md5(f"DESCRIBE:{target}")
        fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{target}"'
        if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
            cnonce = os.urandom(8).hex()
            response = _md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            fields += f', qop=auth, nc=00000001, cnonce="{cnonce}"'
        else:
            response = _md5(f"{ha1}:{nonce}:{ha2}")
        opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
        return f'Digest {fields}, response="{response}"{opaque}'
    if any(c.partition(" ")[0].lower() == "basic" for c in challenges):
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
