"""Conditional GETs (RFC 9110 section 13): whether a client's If-None-Match names what it would get."""

from __future__ import annotations

import re

# one list member: an entity-tag, weak or strong (RFC 9110 8.8.3: etagc = %x21 / %x23-7E / obs-text),
# after any empty members and whitespace before it
_MEMBER = re.compile(r'[ \t,]*(?:W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*')


def none_match(field_values: list[str], etag: str) -> bool:
    """Whether If-None-Match (each of its field lines, in order) matches `etag`, so that a GET is
    answered 304 (RFC 9110 13.1.2): "*" alone matches any representation there is; otherwise the field
    is a comma-separated list of entity-tags, and one matches when its opaque tag equals `etag`'s,
    either being weak (W/) or not (the weak comparison, 8.8.3.2). A field that is no such list (a tag
    without its quotes, "*" among tags) matches nothing: the full answer is sent, as without it."""
    field = ", ".join(field_values).strip(" \t")
    if not field:
        return False
    if field == "*":
        return True
    wanted = etag.removeprefix("W/").strip('"')
    listed: list[str] = []
    at = 0
    while at < len(field):
        member = _MEMBER.match(field, at)
        if member is None:
            if field[at:].strip(" \t,"):
                return False
            break
        listed.append(member.group(1))
        at = member.end()
        if at < len(field) and field[at] != ",":
            return False
    return wanted in listed
