"""The one audit helper (after pretix's `log_action`): dotted action codes, dict data, secrets masked."""

from __future__ import annotations

from typing import Any

from django.db import models

from audit.models import AuditEvent

_SECRET_MARKERS = ("password", "secret", "token", "api_key", "apikey", "authorization", "cookie")
MASK = "********"


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (MASK if any(marker in str(key).lower() for marker in _SECRET_MARKERS) else _mask(item))
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_mask(item) for item in value]
    return value


def _owner_of(target: models.Model | None) -> Any | None:
    """The user who owns `target` (its `owner`), when it has one: whose object the event is about."""
    if target is None or not hasattr(target, "owner_id"):
        return None
    owner = getattr(target, "owner", None)
    return owner if hasattr(owner, "get_username") else None


def audit_log(
    *,
    actor: Any | None,
    action: str,
    target: models.Model | None = None,
    team: Any | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    if "." not in action:
        raise ValueError(f"Audit action codes are dotted (entity.verb), got {action!r}")
    if team is None and target is not None:
        team = getattr(target, "team", None)
        if team is not None and team.__class__.__name__ != "Team":
            team = None
    acting_user = actor if getattr(actor, "is_authenticated", False) else None
    subject_owner = _owner_of(target)
    return AuditEvent.objects.create(
        actor=acting_user,
        actor_username=acting_user.get_username() if acting_user is not None else "",
        subject_owner=subject_owner,
        subject_owner_username=subject_owner.get_username() if subject_owner is not None else "",
        team=team,
        action=action,
        # model_name is set for every model class; the stubs type it Optional (unset Options).
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_code=getattr(target, "code", None) if target is not None else None,
        data=_mask(dict(data or {})),
    )
