"""Who changed an account or an integration: one INFO line per admin action, the same whichever way it
came (the API, the admin pages, the CLI), so that district IT can answer "who did this" from the log.

    admin action: by=user:alice action=user.deactivate target=user:bob
    admin action: by=operator:root action=webhook.add target=webhook:3 url=https://hooks.example/in?token=***

Every value goes through streams.urls.mask_credentials, and callers pass names, ids and masked URLs,
never a password, device key, webhook secret or token: the line says what changed, not to what secret.
A value holding anything but printable non-space characters is quoted (JSON), so one action stays one
line whatever a file name or team holds."""

from __future__ import annotations

import getpass
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from api.accounts.accounts import Principal
from streams.urls import mask_credentials, public_stream

if TYPE_CHECKING:
    from api.storage.models import Camera

log = logging.getLogger(__name__)

_PLAIN = re.compile(r"[!-~]+")  # printable ASCII, no space: written as it is


def local_operator() -> Principal:
    """The CLI's actor: whoever runs `gridpatrol` on the server's machine (an OS account, not a
    gridpatrol user), labelled operator:<login name>. The role says it acts as no user role."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name and no LOGNAME/USER in the environment
        name = "unknown"
    return Principal(kind="operator", name=name or "unknown", role="operator")


def _value(value: object) -> str:
    text = mask_credentials(str(value))
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def admin_action(actor: Principal, action: str, target: str, **details: object) -> None:
    """Log that `actor` did `action` (noun.verb: user.add, device.rotate, grid.import) to `target`
    (kind:name: user:bob, webhook:3, grid); `details` (role=, url=, fields=) follow as key=value,
    None ones left out. Never pass a secret here: masking catches URL passwords, not a bare key."""
    parts = [f"by={_value(actor.label)}", f"action={_value(action)}", f"target={_value(target)}"]
    parts += [f"{key}={_value(value)}" for key, value in details.items() if value is not None]
    log.info("admin action: %s", " ".join(parts))


def camera_edited(actor: Principal, camera: Camera, changes: Mapping[str, object]) -> None:
    """A camera edit's line: the names of the fields changed (their values may be long, or secret as
    the stream URL is), the new stream as responses show it (camera_added), whether it is analysed."""
    admin_action(
        actor,
        "camera.edit",
        f"camera:{camera.id}",
        fields=",".join(sorted(changes)) or "-",
        stream=public_stream(camera.stream_url) if "stream_url" in changes else None,
        enabled=camera.enabled if "enabled" in changes else None,
    )


def camera_added(actor: Principal, camera: Camera) -> None:
    """A new camera's line, its stream as responses show it (scheme://host:port: a camera URL's user
    name and path may say too much, not only its password)."""
    admin_action(actor, "camera.add", f"camera:{camera.id}", stream=public_stream(camera.stream_url))
