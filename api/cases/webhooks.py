"""Webhooks: case events become JSON POSTs to configured URLs, signed with HMAC-SHA256.

Deliveries are rows in a queue table, written in the same transaction as the case change; a
background thread (WebhookDispatcher) sends them, retrying with exponential backoff. Case handling
only inserts rows, so a dead endpoint never slows it. Each attempt is logged on its row (its time,
status and error; created_at is when the event was queued), which admins read as the delivery log.
A deactivated webhook (deactivate_webhook) gets nothing more: its pending deliveries are failed,
never sent, and the row and its log stay. activate_webhook switches it on again with the same
secret, for the events from then on (the failed deliveries stay failed).

Headers: X-GridPatrol-Event, X-GridPatrol-Delivery (row id), X-GridPatrol-Signature:
"sha256=<hex HMAC-SHA256 of the raw body with the webhook's secret>".

Targets are checked (api.cases.webhook_targets): a URL whose host is or resolves to this server or a
private network is refused when registered, and a delivery whose host resolves to one when it is
sent (DNS rebinding) is marked failed with the reason, never sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.cases.webhook_targets import IPAddress, TargetPolicy, TargetRefused, TargetUnresolved
from api.errors import InputError, NotFound
from api.storage.db import iso_utc, utcnow
from api.storage.models import Webhook, WebhookDelivery

log = logging.getLogger(__name__)


class WebhookEvent(StrEnum):
    """What a webhook may subscribe to: a case entering one of the statuses that notify."""

    CASE_FILED = "case.filed"
    CASE_DISPATCHED = "case.dispatched"
    CASE_CLOSED = "case.closed"
    CUSTODY_CHECKPOINT = "custody.checkpoint"  # the ledger's head, for a witness outside (checkpoints)
    CAMERA_OFFLINE = "camera.offline"  # no report from its runner for a while (api.cameras)
    CAMERA_ONLINE = "camera.online"  # reported again after being offline


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # after max_attempts


EVENTS: tuple[WebhookEvent, ...] = tuple(WebhookEvent)
# what a webhook registered without a list of events receives: the case events (a witness of the
# custody checkpoints and a camera monitor subscribe to their events by name)
CASE_EVENTS: tuple[WebhookEvent, ...] = tuple(e for e in WebhookEvent if e.startswith("case."))


class WebhookInputError(InputError):
    """A webhook that cannot be registered as sent; names the field."""


class WebhookTargetRefused(WebhookInputError):
    """A webhook URL whose host is, or resolves to, an address webhooks may not reach (the reason
    says which and why)."""


class WebhookTaken(WebhookInputError):
    """A URL an active webhook already has (the form sent twice): each event goes to a URL once (409)."""

    status = 409

    def __init__(self, hook_id: int) -> None:
        super().__init__("url", f"webhook {hook_id} already has this URL (each event is sent to a URL once)")
        self.hook_id = hook_id


class WebhookUrlUnusable(WebhookInputError):
    """A webhook URL no delivery could use (see url_problem); the reason says what is wrong with it."""


class WebhookNotFound(NotFound):
    """No webhook has that id (404)."""

    def __init__(self, hook_id: int) -> None:
        super().__init__("webhook_id", f"no webhook {hook_id}")
        self.hook_id = hook_id


DEACTIVATED_ERROR = "not sent: the webhook was deactivated"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """A webhook as admins list it (its secret is shown once, by create_webhook)."""

    id: int
    url: str
    events: list[str]
    active: bool

    @classmethod
    def of(cls, hook: Webhook) -> WebhookInfo:
        return cls(id=hook.id, url=hook.url, events=hook.events.split(","), active=hook.active)


SECRET_MIN, SECRET_MAX = 16, 128  # characters of a signing secret an admin chooses (the column holds 128)
SCHEME_PROBLEM = "must be an http:// or https:// URL with a host"
HOST_NAME = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?$")  # labels as IDNA writes them


def url_problem(url: str) -> str | None:
    """Why `url` cannot be delivered to, or None: an http(s) URL with a host name or IP address, a
    port (if any) from 1 to 65535, and no space or control character, which no HTTP client sends."""
    odd = next((i for i, c in enumerate(url) if c.isspace() or unicodedata.category(c) == "Cc"), None)
    if odd is not None:
        return f"has a space or control character ({url[odd]!r}) at position {odd}"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": a '[' left open
        return f"cannot be read as a URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return SCHEME_PROBLEM
    try:
        port = parts.port
    except ValueError:  # not a number, or over 65535
        port = 0
    if port == 0:
        return f"port {parts.netloc.rpartition(':')[2]!r} is not a number from 1 to 65535"
    host = parts.hostname
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    if not HOST_NAME.match(ascii_host):
        return f"host {host!r} is neither a host name nor an IP address"
    return None


def _check_target(url: str, targets: TargetPolicy | None) -> None:
    """WebhookInputError (naming url, saying why) unless deliveries could go to `url` now."""
    problem = url_problem(url)
    if problem == SCHEME_PROBLEM:
        raise WebhookInputError("url", problem)
    if problem is not None:
        raise WebhookUrlUnusable("url", problem)
    refusal = (targets or TargetPolicy()).check_url(url)
    if refusal is not None:
        raise WebhookTargetRefused("url", refusal)


def _refuse_taken(session: Session, url: str) -> None:
    """WebhookTaken when an active webhook has `url` (each event goes to a URL once)."""
    taken = session.scalar(select(Webhook.id).where(Webhook.url == url, Webhook.active.is_(True)))
    if taken is not None:
        raise WebhookTaken(taken)


def _store_active(session: Session, hook: Webhook) -> None:
    """Add `hook` (if new) and mark it active, flushed in a savepoint. _refuse_taken, before this,
    names the webhook with its URL; when another request registered or activated that URL between the
    two (a double click on two servers), the unique index of active URLs refuses the row, and that is
    WebhookTaken too, naming the winner, with the caller's transaction still usable."""
    try:
        with session.begin_nested():
            session.add(hook)
            hook.active = True
            session.flush()
    except IntegrityError:
        _refuse_taken(session, hook.url)
        raise  # not the URL's index: no other webhook has it


def create_webhook(
    session: Session,
    *,
    url: str,
    events: list[str] | None,
    secret: str | None,
    targets: TargetPolicy | None = None,
) -> tuple[WebhookInfo, str]:
    """Register a webhook; returns it and its signing secret (the one given, of SECRET_MIN to
    SECRET_MAX characters, or a new random one). A URL whose host is, or resolves now to, an address
    `targets` refuses (by default: any non-public one) is refused, naming the url field and the
    reason; so is a URL an active webhook has (WebhookTaken: a form sent twice would otherwise send
    every event twice, for good)."""
    _check_target(url, targets)
    if secret is not None and not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise WebhookInputError("secret", f"{SECRET_MIN} to {SECRET_MAX} characters, not {len(secret)}")
    events = events or list(CASE_EVENTS)
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise WebhookInputError("events", f"unknown events {unknown}; choose from {', '.join(EVENTS)}")
    _refuse_taken(session, url)
    hook = Webhook(url=url, secret=secret or secrets.token_urlsafe(32), events=",".join(events))
    _store_active(session, hook)
    return WebhookInfo.of(hook), hook.secret


def list_webhooks(session: Session) -> list[WebhookInfo]:
    return [WebhookInfo.of(h) for h in session.scalars(select(Webhook).order_by(Webhook.id))]


def deactivate_webhook(session: Session, *, hook_id: int) -> tuple[WebhookInfo, bool]:
    """Stop a webhook for good: no event is queued for it from now on, and its pending deliveries
    (first tries and retries alike) are marked failed, never sent. The webhook and its delivery log
    stay for the record; activate_webhook switches it on again with its secret, and its URL may be
    registered again (as a new webhook, with a new secret). Returns it and whether it was active."""
    hook = session.get(Webhook, hook_id)
    if hook is None:
        raise WebhookNotFound(hook_id)
    if not hook.active:
        return WebhookInfo.of(hook), False
    hook.active = False
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == hook_id, WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.FAILED, last_error=DEACTIVATED_ERROR)
    )
    session.flush()
    log.info("webhook %s deactivated", hook_id)
    return WebhookInfo.of(hook), True


def activate_webhook(
    session: Session, *, hook_id: int, targets: TargetPolicy | None = None
) -> tuple[WebhookInfo, bool]:
    """Switch a deactivated webhook on again, with its URL, events and signing secret (a receiver
    keeps the secret it was configured with): the events from now on are queued for it. What it
    missed is not sent: the deliveries failed when it was deactivated stay failed, and no event of
    the time between is queued. Refused when another active webhook has its URL (WebhookTaken: each
    event goes to a URL once) or when its URL may not be sent to now (the allow-list may have changed
    since it was registered). Returns it and whether it was inactive (an active one is left as it is)."""
    hook = session.get(Webhook, hook_id)
    if hook is None:
        raise WebhookNotFound(hook_id)
    if hook.active:
        return WebhookInfo.of(hook), False
    _refuse_taken(session, hook.url)  # the hook itself is inactive: another has the URL
    _check_target(hook.url, targets)
    _store_active(session, hook)
    log.info("webhook %s activated", hook_id)
    return WebhookInfo.of(hook), True


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """A webhook's deliveries in brief, as `gridpatrol webhook list` shows them: how many wait (first
    tries and retries) and how many failed for good, and its last attempt: the delivery tried last
    (the newest attempt time; among deliveries tried before migration 0020 recorded it, the newest
    event), None when none was tried."""

    waiting: int = 0
    failed: int = 0
    last_tried: bool = False  # whether any delivery was tried (the fields below describe that one)
    last_attempt_at: datetime | None = None  # when it was tried last (naive UTC); None: not recorded
    last_queued_at: datetime | None = None  # when its event was queued (naive UTC)
    last_outcome: str | None = None  # delivered, failed, or retrying (tried, to be tried again)
    last_status_code: int | None = None  # the receiver's last HTTP status; None: no answer
    next_attempt_at: datetime | None = None  # its next try (naive UTC), when retrying


def delivery_states(session: Session) -> dict[int, DeliveryState]:
    """Each webhook's DeliveryState by its id (a webhook with no delivery is missing: the default)."""
    counts: dict[int, dict[str, int]] = {}
    for hook_id, status, count in session.execute(
        select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED]))
        .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
    ):
        counts.setdefault(hook_id, {})[status] = count
    # a delivery tried before 0020 has no time; every one tried since is tried later than it
    latest_first = func.row_number().over(
        partition_by=WebhookDelivery.webhook_id,
        order_by=(WebhookDelivery.last_attempt_at.desc().nulls_last(), WebhookDelivery.id.desc()),
    )
    ranked = (
        select(WebhookDelivery.id, latest_first.label("rank")).where(WebhookDelivery.attempts > 0).subquery()
    )
    newest = select(ranked.c.id).where(ranked.c.rank == 1)
    last = {
        d.webhook_id: d
        for d in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(newest)))
    }
    states = {}
    for hook_id in counts.keys() | last.keys():
        hook_counts, d = counts.get(hook_id, {}), last.get(hook_id)
        retrying = d is not None and d.status == DeliveryStatus.PENDING
        states[hook_id] = DeliveryState(
            waiting=hook_counts.get(DeliveryStatus.PENDING, 0),
            failed=hook_counts.get(DeliveryStatus.FAILED, 0),
            last_tried=d is not None,
            last_attempt_at=None if d is None else d.last_attempt_at,
            last_queued_at=None if d is None else d.created_at,
            last_outcome=None if d is None else "retrying" if retrying else d.status,
            last_status_code=None if d is None else d.last_status_code,
            next_attempt_at=d.next_attempt_at if d is not None and retrying else None,
        )
    return states


@dataclass(frozen=True, slots=True)
class ListedWebhook(WebhookInfo):
    """A webhook with its deliveries in brief, as GET /api/webhooks, `gridpatrol webhook list` and
    the admin page list it."""

    delivery: DeliveryState


def list_webhooks_with_state(session: Session) -> list[ListedWebhook]:
    """The webhooks (by id) with their DeliveryState (delivery_states'; the default for none)."""
    states = delivery_states(session)
    return [
        ListedWebhook(h.id, h.url, h.events, h.active, states.get(h.id, DeliveryState()))
        for h in list_webhooks(session)
    ]


def list_deliveries(
    session: Session, *, status: str | None = None, limit: int = 100
) -> list[WebhookDelivery]:
    """The delivery log, newest first."""
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return list(session.scalars(stmt))


def enqueue(
    session: Session, *, event: str, case_id: int | None, payload: dict[str, Any], key: str = "case"
) -> int:
    """Queue one delivery per active webhook subscribed to the event (in the caller's transaction);
    the body is {"event", "occurred_at", key: payload}."""
    hooks = [
        h
        for h in session.scalars(select(Webhook).where(Webhook.active.is_(True)))
        if event in h.events.split(",")
    ]
    now = utcnow()
    for hook in hooks:
        body = {"event": str(event), "occurred_at": iso_utc(now), key: payload}
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event=event,
                case_id=case_id,
                payload=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return len(hooks)


class _Deadline:
    """A delivery's total deadline. httpx's timeouts bound each read, not the request: a receiver
    sending a byte now and then would hold the one sender thread (and every delivery behind it) for
    as long as it likes. At the deadline a timer shuts the connection's socket down, which ends the
    read waiting on it at once; `passed` then says why the request failed.

    Use `trace` as the request's httpcore trace extension: it keeps a duplicate of each new
    connection's socket (a duplicate, so that it names that connection even after httpcore closed
    its own; closed on leaving)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.passed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event != "connection.connect_tcp.complete":
            return
        own = info["return_value"].get_extra_info("socket")
        sock = socket.fromfd(own.fileno(), own.family, own.type)
        with self._lock:
            self._sockets.append(sock)
            if self.passed:  # connected just as the time ran out
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)


class WebhookDispatcher:
    """Background thread sending due deliveries; `run_once` sends what is due now (for tests).
    Each delivery's host is resolved and checked against `targets` (by default: public addresses
    only) and the request goes to the address that was checked.

    Each delivery has `timeout_s` in all, from connecting to the response's status line and
    headers (its body is not read): one that takes longer fails as an attempt, retried with the
    backoff like any other."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        poll_s: float = 0.5,
        targets: TargetPolicy | None = None,
    ) -> None:
        self.factory = factory
        self.targets = targets or TargetPolicy()
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gridpatrol-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:

        with self._client() as client:
            while not self._stop.is_set():
                try:
                    sent = self.run_once(client)
                except Exception:  # keep the thread alive whatever one round does
                    log.exception("webhook dispatch round failed")
                    sent = 0
                if not sent:
                    self._stop.wait(self.poll_s)

    def _client(self) -> Any:
        """A client whose every request opens its own connection, which _Deadline can end."""
        import httpx

        return httpx.Client(timeout=self.timeout_s, limits=httpx.Limits(max_keepalive_connections=0))

    def _claim(self, limit: int = 20) -> list[tuple[WebhookDelivery, Webhook]]:
        """Take due deliveries, pushing their next attempt out as a lease against other dispatchers."""
        now = utcnow()
        lease = now + timedelta(seconds=self.timeout_s * 2 + 30)
        claimed = []
        with self.factory() as session:
            due = session.scalars(
                select(WebhookDelivery.id)
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    Webhook.active.is_(True),  # deactivate_webhook fails these; never sent regardless
                )
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(limit)
            ).all()
            for delivery_id in due:
                result = session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == delivery_id,
                        WebhookDelivery.status == DeliveryStatus.PENDING,
                        WebhookDelivery.next_attempt_at <= now,
                    )
                    .values(next_attempt_at=lease)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    delivery = session.get(WebhookDelivery, delivery_id)
                    hook = session.get(Webhook, delivery.webhook_id)  # type: ignore[union-attr]
                    claimed.append((delivery, hook))
            session.commit()
        return claimed  # type: ignore[return-value]

    def run_once(self, client: Any = None) -> int:
        own = client is None
        client = client or self._client()
        try:
            claimed = self._claim()
            for delivery, hook in claimed:
                self._send(client, delivery, hook)
            return len(claimed)
        finally:
            if own:
                client.close()

    def _send(self, client: Any, delivery: WebhookDelivery, hook: Webhook) -> None:
        code: int | None = None
        error: str | None = None
        refused = False
        try:
            pinned = self.targets.pin(hook.url)
        except TargetRefused as exc:  # never sent; trying again would not change the answer
            error, refused = f"refused: {exc}"[:500], True
        except TargetUnresolved as exc:  # DNS may answer later: retried like a connection error
            error = str(exc)[:500]
        else:
            code, error = self._post(client, delivery, hook, pinned.address)
        now = utcnow()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": code,
            "last_error": error,
            "last_attempt_at": now,
        }
        if error is None:
            values.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
        elif refused or attempts >= self.max_attempts:
            values.update(status=DeliveryStatus.FAILED)
            log.warning("webhook delivery %s to hook %s failed for good: %s", delivery.id, hook.id, error)
        else:
            delay = min(self.backoff_s * 2 ** (attempts - 1), 3600.0)
            values.update(next_attempt_at=now + timedelta(seconds=delay))
        with self.factory() as session:
            session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values))
            session.commit()

    def _post(
        self, client: Any, delivery: WebhookDelivery, hook: Webhook, address: IPAddress
    ) -> tuple[int | None, str | None]:
        """POST the delivery to `address` (checked; not the host resolved again, which a rebinding
        name could answer differently), with the URL's own Host header and TLS server name, within
        the deadline (_Deadline). Only the status counts: the response's body is never read."""
        import httpx

        body = delivery.payload.encode()
        deadline = _Deadline(self.timeout_s)
        try:
            url = httpx.URL(hook.url)
            headers = {
                "Host": url.netloc.decode("ascii"),
                "Content-Type": "application/json",
                "User-Agent": "gridpatrol-webhook/1",
                "X-GridPatrol-Event": delivery.event,
                "X-GridPatrol-Delivery": str(delivery.id),
                "X-GridPatrol-Signature": sign(hook.secret, body),
            }
            with (
                deadline,
                client.stream(
                    "POST",
                    url.copy_with(host=str(address)),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": url.raw_host.decode("ascii"), "trace": deadline.trace},
                ) as response,
            ):
                code = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            if deadline.passed:
                return None, f"timed out: no answer within {self.timeout_s:g} s in all"
            return None, f"{type(exc).__name__}: {exc}"[:500]
        return code, None if 200 <= code < 300 else f"HTTP {code}"
