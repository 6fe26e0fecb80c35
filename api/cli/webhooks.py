"""`gridpatrol webhook list | add URL | deactivate ID | activate ID`: the signed webhooks
(api.cases.webhooks) from the command line, for a district that runs the service without its pages.

As with POST /api/webhooks, a webhook's signing secret is printed once, by `add`, when it was
generated (a secret given on stdin is not printed back); nothing here logs it. URLs are shown with
their password and secret parameters as *** (streams.urls.mask_credentials), as the pages show them.
A running server sees every change at once: it reads the webhooks from the database for each event.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from api.cli import CommandError
from api.cli.service import _services, _table

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from api.cases.webhooks import DeliveryState


def _hook_id(text: str) -> int:
    """A webhook id as argparse reads it: a whole number from 1 (the error names what was given)."""
    from api.storage.models import MAX_ID

    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise argparse.ArgumentTypeError(f"a webhook id is a number from 1 to {MAX_ID}, not {text!r}")
    return int(text)


def _named(args: argparse.Namespace, field: str) -> str:
    """The input an error's field stands for, as the command was given it."""
    from streams.urls import mask_credentials

    if field == "url" and getattr(args, "url", None):
        return f"url {mask_credentials(args.url)!r}"
    if field == "url":  # activate: the webhook's own URL
        return f"url of webhook {args.id}"
    return {"events": "--event", "secret": "secret (stdin)"}.get(field, field)


def _change(args: argparse.Namespace, work: Callable[[Session, Any], Any], *, create: bool = False) -> Any:
    """Run `work(session, services)` in one committed transaction; a webhook's input error (a bad
    or refused URL, an unknown id) becomes the command's error, naming what was given."""
    from api.cases.webhooks import WebhookNotFound, WebhookTaken
    from api.errors import InputError

    services = _services(args, create=create)
    try:
        with services.factory() as session:
            try:
                result = work(session, services)
            except WebhookNotFound as exc:
                raise CommandError(
                    f"webhook {exc.hook_id}: no such webhook (gridpatrol webhook list)"
                ) from None
            except WebhookTaken as exc:
                if getattr(args, "url", None):  # add: the URL given
                    raise CommandError(f"{_named(args, 'url')}: {exc.reason}") from None
                raise CommandError(  # activate: another webhook took its URL meanwhile
                    f"url of webhook {args.id}: webhook {exc.hook_id} has it and is active (each event is "
                    f"sent to a URL once); `gridpatrol webhook deactivate {exc.hook_id}` first"
                ) from None
            except InputError as exc:
                raise CommandError(f"{_named(args, exc.field)}: {exc.reason}") from None
            session.commit()
        return result
    finally:
        services.close()


UNKNOWN = "unknown"  # a delivery tried before migration 0020 recorded its attempts' times


def _at(value: datetime | None) -> str:
    """A stored (naive UTC) time to the second (retries come seconds apart), or '-'."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _last_attempt(state: DeliveryState) -> tuple[str, str, str, str]:
    """The cells of a webhook's last attempt: its time, its result (`delivered 200`, `retrying -` for
    no answer), its next try when retrying, and when its event was queued; `-` for none, and
    `unknown` for the time of an attempt made before migration 0020 recorded it."""
    if not state.last_tried:
        return "-", "-", "-", "-"
    code = "-" if state.last_status_code is None else str(state.last_status_code)
    tried = _at(state.last_attempt_at) if state.last_attempt_at else UNKNOWN
    return tried, f"{state.last_outcome} {code}", _at(state.next_attempt_at), _at(state.last_queued_at)


def _list(args: argparse.Namespace) -> int:
    from api.cases.webhooks import list_webhooks_with_state
    from streams.urls import mask_credentials

    services = _services(args)
    try:
        with services.read_factory() as session:
            hooks = list_webhooks_with_state(session)
    finally:
        services.close()
    rows: list[tuple[str, ...]] = []
    for h in hooks:
        state = h.delivery
        rows.append(
            (
                str(h.id),
                "yes" if h.active else "no",
                ",".join(h.events),
                *_last_attempt(state),
                str(state.waiting),
                str(state.failed),
                mask_credentials(h.url),
            )
        )
    header = ("ID", "ACTIVE", "EVENTS", "LAST ATTEMPT (UTC)", "RESULT", "NEXT TRY (UTC)", "QUEUED (UTC)")
    _table((*header, "WAITING", "FAILED", "URL"), rows)
    return 0


def _secret_from_stdin() -> str:
    secret = sys.stdin.readline().strip()
    if not secret:
        raise CommandError("secret: nothing on stdin (--secret-stdin reads the secret from its first line)")
    return secret


def _add(args: argparse.Namespace) -> int:
    from api.admin_log import admin_action, local_operator
    from api.cases.webhooks import create_webhook
    from streams.urls import mask_credentials

    given = _secret_from_stdin() if args.secret_stdin else None
    hook, secret = _change(
        args,
        lambda session, services: create_webhook(
            session,
            url=args.url,
            events=args.events,
            secret=given,
            targets=services.webhook_targets,
        ),
        create=True,
    )
    events = ",".join(hook.events)
    admin_action(local_operator(), "webhook.add", f"webhook:{hook.id}", url=hook.url, events=events)
    print(f"webhook {hook.id} added: {mask_credentials(hook.url)} ({', '.join(hook.events)})")
    if given is not None:
        print("it signs with the secret given on stdin")
        return 0
    print("its signing secret (shown only now; the receiver checks X-GridPatrol-Signature with it):")
    print(secret)
    return 0


def _deactivate(args: argparse.Namespace) -> int:
    from api.admin_log import admin_action, local_operator
    from api.cases.webhooks import deactivate_webhook

    hook, changed = _change(args, lambda session, _: deactivate_webhook(session, hook_id=args.id))
    if not changed:
        print(f"webhook {hook.id} was already inactive")
        return 0
    admin_action(local_operator(), "webhook.deactivate", f"webhook:{hook.id}", url=hook.url)
    print(
        f"webhook {hook.id} deactivated: nothing more is sent to it, its pending deliveries included "
        f"(marked failed); `gridpatrol webhook activate {hook.id}` switches it on again with its secret"
    )
    return 0


def _activate(args: argparse.Namespace) -> int:
    from api.admin_log import admin_action, local_operator
    from api.cases.webhooks import activate_webhook

    hook, changed = _change(
        args,
        lambda session, services: activate_webhook(
            session, hook_id=args.id, targets=services.webhook_targets
        ),
    )
    if not changed:
        print(f"webhook {hook.id} was already active")
        return 0
    admin_action(local_operator(), "webhook.activate", f"webhook:{hook.id}", url=hook.url)
    print(
        f"webhook {hook.id} is active again, with the same signing secret: the events from now on are "
        "sent to it (deliveries failed when it was deactivated stay failed)"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="overrides GRIDPATROL_DATABASE_URL")

    p = subparsers.add_parser("webhook", help="signed webhooks (case and camera events as JSON POSTs)")
    sub = p.add_subparsers(dest="webhook_command", metavar="ACTION")
    q = sub.add_parser(
        "list",
        help="webhooks: id, active, events, the last attempt to deliver (when, result, next try, when "
        "its event was queued), deliveries waiting and failed, URL (passwords and tokens as ***)",
    )
    db_option(q)
    q.set_defaults(handler=_list)
    q = sub.add_parser("add", help="register a webhook; prints its generated signing secret once")
    q.add_argument(
        "url", help="http:// or https://, to a public host unless GRIDPATROL_WEBHOOK_ALLOW_HOSTS allows it"
    )
    q.add_argument(
        "--event",
        dest="events",
        action="append",
        metavar="EVENT",
        help="an event to send (repeatable): case.filed, case.dispatched, case.closed, "
        "custody.checkpoint, camera.offline, camera.online; default: the case.* events",
    )
    q.add_argument(
        "--secret-stdin",
        action="store_true",
        help="sign with the secret on stdin's first line (16-128 characters) instead of a generated one",
    )
    db_option(q)
    q.set_defaults(handler=_add)
    q = sub.add_parser(
        "deactivate", help="send nothing more to a webhook, its pending retries included; its log stays"
    )
    q.add_argument("id", type=_hook_id, help="the webhook's id (gridpatrol webhook list)")
    db_option(q)
    q.set_defaults(handler=_deactivate)
    q = sub.add_parser("activate", help="switch a deactivated webhook on again, with the same secret")
    q.add_argument("id", type=_hook_id, help="the webhook's id (gridpatrol webhook list)")
    db_option(q)
    q.set_defaults(handler=_activate)
