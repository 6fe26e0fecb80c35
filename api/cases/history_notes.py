"""The notes the service itself writes into a case's history, and reading them back into their parts.

A history row keeps its note as text (the API shows it as stored); the pages read the service's own
notes back into their parts so that they are shown in the page's language. A note in none of these
shapes (a person's, or an older wording) reads as None and is shown as it is.
"""

from __future__ import annotations

import re

_CREATED = re.compile(r"incident (?P<incident>\S+)")
_REOPENED = re.compile(r"seen again \(incident (?P<incident>\S+)\)")
_SEEN_BEFORE_CLOSE = re.compile(r"seen before it was closed \(incident (?P<incident>\S+)\)")
_UNDO = re.compile(r"undid (?P<action>[a-z_]+)")
_RECATEGORIZED = re.compile(r"(?P<before>\S+) -> (?P<after>\S+)")
_SHAPES = {
    "created": _CREATED,
    "reopened": _REOPENED,
    "seen_before_close": _SEEN_BEFORE_CLOSE,
    "undo": _UNDO,
    "recategorized": _RECATEGORIZED,
}


def created_note(incident_id: str) -> str:
    return f"incident {incident_id}"


def reopened_note(incident_id: str) -> str:
    return f"seen again (incident {incident_id})"


def seen_before_close_note(incident_id: str) -> str:
    return f"seen before it was closed (incident {incident_id})"


def undo_note(undone_action: str) -> str:
    return f"undid {undone_action}"


def recategorized_note(before: str, after: str) -> str:
    return f"{before} -> {after}"


def note_parts(action: str, note: str | None) -> dict[str, str] | None:
    """The parts of a note the service wrote for this history action (e.g. {"incident": "inc-1"} of
    a "created" row); None for any other note."""
    shape = _SHAPES.get(action)
    match = shape.fullmatch(note) if shape is not None and note else None
    return match.groupdict() if match else None
