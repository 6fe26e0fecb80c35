"""Admin: users, devices, webhooks and the webhook delivery log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api import auth, webhooks
from api.models import Webhook, WebhookDelivery
from api.routes.deps import Admin, ReadSessionDep, SessionDep

router = APIRouter(prefix="/api", tags=["admin"])


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: Literal["admin", "operator", "enforcement", "viewer"]
    team: str | None = Field(None, max_length=64)


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    camera_id: str | None = Field(None, max_length=64)


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=500)
    events: list[Literal["case.filed", "case.dispatched", "case.closed"]] | None = None
    secret: str | None = Field(None, min_length=16, max_length=128)


@router.post("/users", status_code=201)
def post_user(body: UserIn, principal: Admin, session: SessionDep) -> dict[str, Any]:
    user = auth.create_user(
        session, username=body.username, password=body.password, role=body.role, team=body.team
    )
    session.commit()
    return {"id": user.id, "username": user.username, "role": user.role, "team": user.team}


@router.post("/devices", status_code=201)
def post_device(body: DeviceIn, principal: Admin, session: SessionDep) -> dict[str, Any]:
    """A new device; its key is in this response only."""
    device, key = auth.create_device(session, name=body.name, camera_id=body.camera_id)
    session.commit()
    return {"id": device.id, "name": device.name, "camera_id": device.camera_id, "key": key}


@router.post("/webhooks", status_code=201)
def post_webhook(body: WebhookIn, principal: Admin, session: SessionDep) -> dict[str, Any]:
    """Register a webhook; the signing secret is in this response only."""
    hook = webhooks.create_webhook(
        session, url=body.url, events=list(body.events or []) or None, secret=body.secret
    )
    session.commit()
    return {"id": hook.id, "url": hook.url, "events": hook.events.split(","), "secret": hook.secret}


@router.get("/webhooks")
def get_webhooks(principal: Admin, session: ReadSessionDep) -> list[dict[str, Any]]:
    return [
        {"id": h.id, "url": h.url, "events": h.events.split(","), "active": h.active}
        for h in session.scalars(select(Webhook).order_by(Webhook.id))
    ]


@router.get("/webhooks/deliveries")
def get_deliveries(
    principal: Admin,
    session: ReadSessionDep,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The delivery log, newest first."""
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    return [
        {
            "id": d.id,
            "webhook_id": d.webhook_id,
            "event": d.event,
            "case_id": d.case_id,
            "status": d.status,
            "attempts": d.attempts,
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "next_attempt_at": d.next_attempt_at.isoformat() + "Z",
            "created_at": d.created_at.isoformat() + "Z",
            "delivered_at": d.delivered_at.isoformat() + "Z" if d.delivered_at else None,
        }
        for d in session.scalars(stmt)
    ]
