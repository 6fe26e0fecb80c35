"""The runner's forwarder: a thread sending the spool's items, oldest first, to the case service's
POST /api/incidents (multipart: the `incident` JSON first, then one `files` part per evidence file) with
the device key as a bearer token.

What each answer does to the item at the head of the spool:

  2xx (201 new, 200 already received)   acked (removed); the next item goes at once. A 2xx whose body
                                        is not the service's answer (another server or a proxy's
                                        page at the URL) is retried as below: never acked
  400, 409, 413, 415, 422               the item itself is bad: moved to rejected/ with the answer saved,
                                        logged and counted; the next item goes at once (so is an item
                                        the spool can no longer read); 409: its incident id was received
                                        before with other content (the answer names what differs). Only
                                        the service's own error (JSON with its `detail`) says so: another
                                        answer (a proxy's page: nginx's 413 over its 1 MiB body limit) is
                                        retried as below, the item kept, the error saying who refused it
  401, 403                              the key is wrong or revoked: the item stays; logged as an error at
                                        most once a minute; retried every `auth_retry_s`
  429, 5xx (503, 507 ...), no answer    the item stays and is sent again after a pause: Retry-After when
  (connection refused, timeout, ...)    the service gives one (at least `backoff_min_s`, at most
  and any other status                  `retry_after_max_s`), else an exponential backoff from
                                        `backoff_min_s` doubling to `backoff_max_s`, jittered (half to
                                        all of it) so many runners do not come back in step

A backlog (more than one item waiting, after an outage) goes `batch_max` items at a time to
POST /api/incidents/batch, oldest first, one request and one transaction for all of them; each
incident's own answer in the batch is handled as above (2xx acked, 400/409/413/415/422 rejected) and the
batch stops at the first other one (the rest stay, to be sent again). The whole batch's answer
(401/403, 429, 5xx, no answer) is handled as a single item's. A case service without the batch
route (404, 405: an older version) gets single posts from then on.

Stopping: `stop` waits for the send in progress for up to its timeout, then abandons it: whatever its
answer, it touches the spool no more (the item stays and goes again), so the spool may be closed, and
its lock released, when `stop` returns. Sending is at-least-once: an item sent but not acked (the runner
killed, the answer lost) is sent again, and the service answers the same incident (id and content) with
its first sighting (200, duplicate), so nothing is counted twice. The key is never logged, nor the
userinfo of the server URL.
"""

from __future__ import annotations

import email.utils
import enum
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from api.runner.spool import Item, ItemGone, Parcel, Spool

log = logging.getLogger(__name__)

INCIDENTS_PATH = "/api/incidents"
BATCH_PATH = "/api/incidents/batch"
BATCH_MAX = 16  # items a request when a backlog waits
REJECT_STATUSES = frozenset({400, 409, 413, 415, 422})  # the item itself is bad
AUTH_STATUSES = frozenset({401, 403})  # the key is wrong or revoked
MAX_SAVED_BODY = 64 * 1024
NOT_OURS = "the answer is not the case service's (is the server URL right?)"
NOT_ITS_ERROR = (
    "refused by something other than the case service (a proxy before it: its request size limit?); "
    "the incident is kept and sent again"
)


class _Abandoned(Exception):
    """The send in progress was abandoned by stop(): its answer must not touch the spool."""


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"  # delivered; the service had it already
    REJECTED = "rejected"
    RETRY = "retry"
    AUTH = "auth"
    EMPTY = "empty"
    GONE = "gone"  # the item left the spool while being sent (dropped to make room)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one send did: its outcome, the HTTP status (None without an answer), the pause before
    the next send (s)."""

    outcome: Outcome
    status: int | None = None
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ForwarderState:
    """The forwarder's figures for the runner's heartbeat (counts since it started; times Unix s)."""

    delivered: int  # acked items (duplicates included)
    duplicates: int  # of those, incidents the service had already (a resend)
    rejected: int
    failures: int  # sends that failed and will be retried
    last_error: str | None
    last_error_at: float | None
    last_success_at: float | None
    backing_off_until: float | None  # None when not pausing
    auth_failing: bool  # the last answer was 401 / 403


class Forwarder:
    """Sends `spool`'s items to `server_url` (the case service's base URL) with `device_key`."""

    def __init__(
        self,
        spool: Spool,
        *,
        server_url: str,
        device_key: str,
        timeout_s: float = 30.0,
        backoff_min_s: float = 1.0,
        backoff_max_s: float = 60.0,
        auth_retry_s: float = 60.0,
        auth_log_every_s: float = 60.0,
        retry_after_max_s: float = 600.0,
        idle_poll_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        batch_max: int = BATCH_MAX,
    ) -> None:
        self.spool = spool
        self.url = server_url.rstrip("/") + INCIDENTS_PATH
        self.batch_url = server_url.rstrip("/") + BATCH_PATH
        self.batch_max = batch_max  # 1: never batch
        self._batching = batch_max > 1  # off once the service says it has no batch route
        self._alone_next = 0  # sends to make one item at a time (after a batch refused as a whole)
        self.where = masked_url(self.url)
        self._key = device_key
        self.timeout_s = timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.auth_retry_s = auth_retry_s
        self.auth_log_every_s = auth_log_every_s
        self.retry_after_max_s = retry_after_max_s
        self.idle_poll_s = idle_poll_s
        self._transport = transport
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # held while a send reads or changes the spool, not while its request waits for an answer:
        # stop() takes it to abandon that send, so nothing touches the spool once stop() returned
        self._spool_guard = threading.Lock()
        self._abandoned = False
        self._streak = 0  # failed sends in a row
        self._auth_logged_at: float | None = None  # monotonic
        self._counts = {"delivered": 0, "duplicates": 0, "rejected": 0, "failures": 0}
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_success_at: float | None = None
        self._backing_off_until: float | None = None
        self._auth_failing = False

    # --- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._abandoned:
            raise RuntimeError("this forwarder abandoned a send when it stopped: make a new one")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gridpatrol-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None, *, flush_s: float = 0.0) -> None:
        """Stop after the send in progress, waited for up to timeout_s (default: the HTTP timeout and
        5 s) and then abandoned: its answer, if one comes, acks or rejects nothing, and its items stay
        in the spool to be sent again (the service takes a resend once). When this returns nothing
        touches the spool any more: it may be closed and its lock released. flush_s: first go on
        sending for up to this long, until the spool is empty or a send fails (a camera let go sends
        the incidents it has just ended while the service answers; what is left waits in the spool,
        for the camera's next run or the runner's sweeper, api.runner.backlog). A forwarder that
        abandoned a send does not start again (its thread may still be waiting for the answer)."""
        deadline = time.monotonic() + flush_s
        while (
            self._thread is not None
            and self._thread.is_alive()
            and len(self.spool)
            and self.state().backing_off_until is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        self._stop.set()
        self.spool.wake()
        if self._thread is None:
            return
        self._thread.join(self.timeout_s + 5 if timeout_s is None else timeout_s)
        with self._spool_guard:  # waits for a send's spool work, never for its request
            self._abandoned = self._thread.is_alive()
        if self._abandoned:
            log.info(
                "forwarder: stopped with a send to %s unanswered; what it sent stays in the spool "
                "and goes again",
                self.where,
            )
        self._thread = None

    def client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0)),
            headers={"Authorization": f"Bearer {self._key}", "User-Agent": "gridpatrol-runner"},
            transport=self._transport,
        )

    def _loop(self) -> None:
        with self.client() as client:
            while not self._stop.is_set():
                if not self.spool.wait(self.idle_poll_s, until=self._stop.is_set):
                    continue
                try:
                    attempt = self.send_next(client)
                except _Abandoned:
                    return
                except Exception as exc:  # keep the thread alive whatever one send does (a disk error)
                    log.exception("forwarder: sending the oldest spooled item failed")
                    attempt = self._retry(None, f"runner error: {type(exc).__name__}: {exc}", None)
                if attempt.delay_s > 0:
                    self._stop.wait(attempt.delay_s)
                    with self._lock:
                        self._backing_off_until = None

    # --- one send -----------------------------------------------------------------------------

    def send_next(self, client: httpx.Client) -> Attempt:
        """Send the oldest item once (or, when a backlog waits, the oldest `batch_max` in one batch)
        and do what the answer says (see the module docstring); _Abandoned when stop() gave up on
        the send while its request waited for an answer."""
        with self._spool_guard:
            if self._abandoned:
                raise _Abandoned
            return self._send_next(client)

    def _post(self, client: httpx.Client, url: str, parcels: list[Parcel]) -> httpx.Response:
        """POST the parcels' parts without the spool guard held (the one wait stop() does not sit
        out); _Abandoned, whatever the request did, when stop() gave up on it meanwhile."""
        self._spool_guard.release()
        try:
            return client.post(url, files=[part for parcel in parcels for part in _parts(parcel)])
        finally:
            self._spool_guard.acquire()
            if self._abandoned:
                raise _Abandoned  # its answer, or its failure, is no one's now

    def _send_next(self, client: httpx.Client) -> Attempt:
        if self._alone_next:
            self._alone_next -= 1
        elif self._batching and len(self.spool) > 1:
            return self._send_batch(client, self.spool.items()[: self.batch_max])
        item = self.spool.oldest()
        if item is None:
            return Attempt(Outcome.EMPTY)
        try:
            parcel = self.spool.load(item)
        except ItemGone:
            return Attempt(Outcome.GONE)
        except (OSError, ValueError, KeyError) as exc:  # never block the queue on one broken item
            return self._unreadable(item, exc)
        try:
            response = self._post(client, self.url, [parcel])
        except httpx.TransportError as exc:
            return self._transport_failed(exc)
        status = response.status_code
        if 200 <= status < 300:
            duplicate = _duplicate_flag(response)
            if duplicate is None:  # not the case service's answer (another server, a proxy's page)
                return self._retry(status, f"HTTP {status}: {NOT_OURS}: {answer_detail(response)}", None)
            self.spool.ack(item)
            self._delivered(1, int(duplicate))
            return Attempt(Outcome.DUPLICATE if duplicate else Outcome.DELIVERED, status)
        if status in REJECT_STATUSES:
            body = _body(response)
            if not _service_error(body):  # a proxy's page (its body size limit): no word on the item
                return self._retry(status, f"HTTP {status}: {NOT_ITS_ERROR}: {answer_detail(response)}", None)
            return self._reject(parcel.item, status, body, response.headers.get("content-type"))
        return self._failed(response)

    def _send_batch(self, client: httpx.Client, items: list[Item]) -> Attempt:
        """The oldest items in one POST /api/incidents/batch; each acked or rejected by its own answer,
        up to the first that is neither."""
        parcels = []
        for item in items:
            try:
                parcels.append(self.spool.load(item))
            except ItemGone:
                continue
            except (OSError, ValueError, KeyError) as exc:  # moved aside; the next send goes at once
                return self._unreadable(item, exc)
        if not parcels:
            return Attempt(Outcome.GONE)
        try:
            response = self._post(client, self.batch_url, parcels)
        except httpx.TransportError as exc:
            return self._transport_failed(exc)
        status = response.status_code
        if status in (404, 405):  # an older case service: single posts from now on
            self._batching = False
            log.info(
                "forwarder: %s has no batch route (HTTP %d); sending one incident at a time",
                self.where,
                status,
            )
            return Attempt(Outcome.RETRY, status)
        answers = _batch_answers(response) if 200 <= status < 300 or status in REJECT_STATUSES else None
        if answers is None:
            if status in REJECT_STATUSES:  # the body refused as a whole: each item alone shows which
                self._alone_next = len(parcels)
                log.warning(
                    "forwarder: %s refused a batch of %d (HTTP %d: %s); sending them one at a time",
                    masked_url(self.batch_url),
                    len(parcels),
                    status,
                    answer_detail(response),
                )
                return Attempt(Outcome.RETRY, status)
            if 200 <= status < 300:
                return self._retry(status, f"HTTP {status}: {NOT_OURS}: {answer_detail(response)}", None)
            return self._failed(response)
        delivered = duplicates = 0
        outcome = Outcome.DELIVERED
        for index, parcel in enumerate(parcels):
            answer = answers.get(index)
            code = int(answer["status_code"]) if answer else 0
            if 200 <= code < 300:
                self.spool.ack(parcel.item)
                delivered += 1
                duplicates += code == 200
            elif code in REJECT_STATUSES:
                assert answer is not None
                self._reject(parcel.item, code, answer.get("error"), "application/json")
            else:  # not answered as delivered or bad: this one and the rest go again
                outcome = Outcome.RETRY
                break
        self._delivered(delivered, duplicates)
        if outcome is Outcome.RETRY:
            return self._retry(status, f"batch item answered {code or 'nothing'}", None)
        if not delivered:
            return Attempt(Outcome.REJECTED, status)
        return Attempt(Outcome.DELIVERED if duplicates < delivered else Outcome.DUPLICATE, status)

    def _delivered(self, count: int, duplicates: int) -> None:
        if not count:
            return
        with self._lock:
            self._counts["delivered"] += count
            self._counts["duplicates"] += duplicates
            self._last_success_at = time.time()
            self._auth_failing = False
            streak, self._streak = self._streak, 0
        if streak:
            log.info("forwarder: %s answers again after %d failed sends", self.where, streak)

    def _transport_failed(self, exc: httpx.TransportError) -> Attempt:
        return self._retry(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, None)

    def _failed(self, response: httpx.Response) -> Attempt:
        """A whole request's answer that is neither success nor the item's own fault."""
        status = response.status_code
        if status in AUTH_STATUSES:
            return self._auth_failed(response)
        reason = f"HTTP {status}: {answer_detail(response)}"
        return self._retry(status, reason, response.headers.get("Retry-After"))

    def _reject(self, item: Item, status: int, body: Any, content_type: str | None) -> Attempt:
        saved = {
            "status": status,
            "url": self.where,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "incident_id": item.incident_id,
            "content_type": content_type,
            "body": body,
        }
        where = self.spool.reject(item, saved)
        detail = _detail_of(body)
        with self._lock:
            self._counts["rejected"] += 1
            self._last_error = f"HTTP {status}: {detail}"
            self._last_error_at = time.time()
            self._auth_failing = False
        log.error(
            "forwarder: %s refused incident %s (%s) with HTTP %d: %s; moved to %s",
            self.where,
            item.incident_id,
            item.category,
            status,
            detail,
            where,
        )
        return Attempt(Outcome.REJECTED, status)

    def _unreadable(self, item: Item, exc: Exception) -> Attempt:
        where = self.spool.reject(item, {"status": None, "reason": f"unreadable in the spool: {exc}"})
        with self._lock:
            self._counts["rejected"] += 1
            self._last_error = f"spooled item {item.name} unreadable: {exc}"
            self._last_error_at = time.time()
        log.error("forwarder: spooled item %s cannot be read (%s); moved to %s", item.name, exc, where)
        return Attempt(Outcome.REJECTED)

    def _auth_failed(self, response: httpx.Response) -> Attempt:
        now = time.monotonic()
        with self._lock:
            self._counts["failures"] += 1
            self._last_error = f"HTTP {response.status_code}: {answer_detail(response)}"
            self._last_error_at = time.time()
            self._auth_failing = True
            self._backing_off_until = time.time() + self.auth_retry_s
            loud = self._auth_logged_at is None or now - self._auth_logged_at >= self.auth_log_every_s
            if loud:
                self._auth_logged_at = now
        if loud:
            log.error(
                "forwarder: %s refuses the device key (HTTP %d: %s): it is wrong or revoked; "
                "incidents stay in the spool (%d now), retrying every %.0f s",
                self.where,
                response.status_code,
                answer_detail(response),
                len(self.spool),
                self.auth_retry_s,
            )
        return Attempt(Outcome.AUTH, response.status_code, self.auth_retry_s)

    def _retry(self, status: int | None, error: str, retry_after: str | None) -> Attempt:
        with self._lock:
            self._streak += 1
            streak = self._streak
        delay = backoff_s(streak, self.backoff_min_s, self.backoff_max_s, self._rng)
        asked = retry_after_s(retry_after)
        if asked is not None:
            delay = min(max(asked, self.backoff_min_s), self.retry_after_max_s)
        with self._lock:
            self._counts["failures"] += 1
            self._last_error = error
            self._last_error_at = time.time()
            self._auth_failing = False
            self._backing_off_until = time.time() + delay
        level = logging.WARNING if streak == 1 else logging.INFO
        log.log(
            level,
            "forwarder: sending to %s failed (%s); retry %d in %.1f s",
            self.where,
            error,
            streak,
            delay,
        )
        return Attempt(Outcome.RETRY, status, delay)

    def state(self) -> ForwarderState:
        with self._lock:
            return ForwarderState(
                delivered=self._counts["delivered"],
                duplicates=self._counts["duplicates"],
                rejected=self._counts["rejected"],
                failures=self._counts["failures"],
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                last_success_at=self._last_success_at,
                backing_off_until=self._backing_off_until,
                auth_failing=self._auth_failing,
            )


def backoff_s(streak: int, low_s: float, high_s: float, rng: random.Random) -> float:
    """The pause after the `streak`-th failed send in a row: low_s doubled per failure up to high_s,
    then jittered to between half and all of it (never under low_s)."""
    full = min(high_s, low_s * 2.0 ** max(0, streak - 1))
    return max(low_s, full * rng.uniform(0.5, 1.0))


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date (None when absent or unreadable)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def masked_url(url: str) -> str:
    """The URL without user and password, for logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def _batch_answers(response: httpx.Response) -> dict[int, dict[str, Any]] | None:
    """A batch answer's entries by index (200, or 422 when none was taken); None when it has none."""
    try:
        results = response.json()["results"]
        answers = {int(r["index"]): r for r in results}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return answers or None


def _parts(parcel: Parcel) -> list[tuple[str, tuple[str | None, bytes, str]]]:
    """A parcel's form parts: the `incident` JSON first, then its `files`."""
    parts: list[tuple[str, tuple[str | None, bytes, str]]] = [
        ("incident", (None, json.dumps(parcel.incident).encode(), "application/json"))
    ]
    return parts + [("files", (f.filename, f.data, f.media_type)) for f in parcel.files]


def _detail_of(body: Any) -> str:
    """An error body's one-line reason (its `detail`), else the start of its text."""
    detail = body.get("detail") if isinstance(body, dict) else None
    text = detail if isinstance(detail, str) else str(body)
    return " ".join(text.split())[:300]


def _service_error(body: Any) -> bool:
    """Whether a 4xx body is the case service's own error (JSON with its `detail`: api.errors), a
    verdict on the item; a proxy's or another server's page (nginx's 413 for a body over its 1 MiB
    default) is none."""
    return isinstance(body, dict) and "detail" in body


def _duplicate_flag(response: httpx.Response) -> bool | None:
    """A 2xx answer's `duplicate` (the service's IngestOutcome); None when the body is no such answer,
    as from a server or proxy page that answers 2xx to anything: the item is not acked on it."""
    try:
        duplicate = response.json().get("duplicate")
    except (ValueError, AttributeError):
        return None
    return duplicate if isinstance(duplicate, bool) else None


def _body(response: httpx.Response) -> Any:
    """The answer's body as saved beside a rejected item: its JSON, else its text (cut short)."""
    try:
        return response.json()
    except ValueError:
        return response.text[:MAX_SAVED_BODY]


def answer_detail(response: httpx.Response) -> str:
    """The service's one-line reason (its error body's `detail`), else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else response.text
    return " ".join(text.split())[:300] or response.reason_phrase
