"""The date-times the service accepts: one range, checked at the edge for every date-time input.

`WallTime` is a pydantic-validated `datetime` (query parameters, the incident's wall times), and
`parse_wall_time` reads one from a form field sent as text (an upload's `start_time`). Both refuse a
time outside 1970-01-01T00:00:00Z .. 2200-01-01T00:00:00Z (exclusive), so that the service's own
arithmetic on an accepted time (to naive UTC, ± the merge window, + the footage's length, a local
day) can never run off Python's calendar (years 1..9999) into an OverflowError, whatever the offset
it was sent with. A time without an offset is taken as UTC, as the storage does (api.storage.db.as_utc).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticCustomError

from api.errors import InputError

EARLIEST_WALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_WALL_TIME = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
NUMBER = re.compile(r"\s*[+-]?\d+(?:\.\d*)?\s*")  # a time sent as text of Unix seconds
OUT_OF_RANGE = "must be from 1970-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z"


class WallTimeError(InputError):
    """A date-time that cannot be read, or one outside the accepted range; names the field."""


def aware(value: datetime) -> datetime:
    """An aware time as it is; a naive one as UTC (as the storage takes it)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def in_range(value: datetime) -> bool:
    """Whether an aware or naive (UTC) time lies in the accepted range. Comparing aware times never
    overflows, even at year 1 with +14:00 (converting one to UTC would)."""
    return EARLIEST_WALL_TIME <= aware(value) < LATEST_WALL_TIME


def held_in_range(value: datetime) -> datetime:
    """A naive UTC time, moved into the accepted range where it falls outside (to its first instant, or
    its last microsecond). For a bound computed from a day of the range at the service's offset (a
    local midnight before 1970-01-01T00:00:00Z at UTC+8): every stored time lies in the range, so
    the bound selects the same times (as an end not included, all but a time at the range's last
    microsecond), and the API takes it."""
    earliest = EARLIEST_WALL_TIME.replace(tzinfo=None)
    latest = LATEST_WALL_TIME.replace(tzinfo=None) - timedelta(microseconds=1)
    return min(max(value, earliest), latest)


def _check(value: datetime) -> datetime:
    if not in_range(value):
        raise PydanticCustomError("wall_time_range", OUT_OF_RANGE)
    return value


def _unix_seconds(value: Any) -> Any:
    """A number as Unix seconds, checked against the range. Pydantic reads a number over 2e10 as
    milliseconds, so 1e12 meant for seconds (year 33658) was stored as 2001-09-09 and its case found
    25 years early; a time in milliseconds is refused as the seconds it would be."""
    if isinstance(value, str) and NUMBER.fullmatch(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not EARLIEST_WALL_TIME.timestamp() <= value < LATEST_WALL_TIME.timestamp():
        raise PydanticCustomError(
            "wall_time_range", "{seconds} Unix seconds: " + OUT_OF_RANGE, {"seconds": str(value)}
        )
    return datetime.fromtimestamp(value, UTC)


WallTime = Annotated[datetime, BeforeValidator(_unix_seconds), AfterValidator(_check)]
"""A datetime in the accepted range (a number: Unix seconds); a validation error (422 naming the
field) otherwise."""


def parse_wall_time(text: str, field: str) -> datetime:
    """An ISO 8601 date-time sent as text (`Z` or an offset; none is UTC), as given; a WallTimeError
    naming `field` when it cannot be read or is out of range."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WallTimeError(field, f"'{text[:40]}' is not an ISO 8601 date-time") from None
    if not in_range(value):
        raise WallTimeError(field, OUT_OF_RANGE)
    return value
