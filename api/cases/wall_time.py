"""The date-times the service accepts: one range, checked at the edge for every date-time input.

`WallTime` is a pydantic-validated `datetime` (query parameters, the incident's wall times), and
`parse_wall_time` reads one from a form field sent as text (an upload's `start_time`). Both refuse a
time outside 1970-01-01T00:00:00Z .. 2200-01-01T00:00:00Z (exclusive), so that the service's own
arithmetic on an accepted time (to naive UTC, ± the merge window, + the footage's length, a local
day) can never run off Python's calendar (years 1..9999) into an OverflowError, whatever the offset
it was sent with. A time without an offset is taken as UTC, as the storage does (api.storage.db.as_utc).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from api.errors import InputError

EARLIEST_WALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_WALL_TIME = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
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


def _check(value: datetime) -> datetime:
    if not in_range(value):
        raise PydanticCustomError("wall_time_range", OUT_OF_RANGE)
    return value


WallTime = Annotated[datetime, AfterValidator(_check)]
"""A datetime in the accepted range; a validation error (422 naming the field) otherwise."""


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
