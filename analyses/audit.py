"""The one audit helper (after pretix's `log_action`): dotted action codes, dict data, secrets masked.

Also the database side of "append-only": the triggers that refuse UPDATE, DELETE (and on
PostgreSQL TRUNCATE) of audit rows, in one place for migration 0002 and the test helper that
must lift them around pytest-django's flush.
"""
from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from analyses.models import AuditEvent

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
    return AuditEvent.objects.create(
        actor=acting_user,
        actor_username=acting_user.get_username() if acting_user is not None else "",
        team=team,
        action=action,
        target_type=target._meta.model_name if target is not None else "",
        target_code=getattr(target, "code", None) if target is not None else None,
        data=_mask(dict(data or {})),
    )


# --------------------------------------------------------------------------- triggers
AUDIT_TABLE = "analyses_auditevent"
_REFUSAL = "Audit events are append-only"
_SQLITE_CREATE = [
    f"CREATE TRIGGER IF NOT EXISTS {AUDIT_TABLE}_no_{verb} BEFORE {verb.upper()} ON {AUDIT_TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}: {verb.upper()} refused'); END"
    for verb in ("update", "delete")
]
_SQLITE_DROP = [f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_no_{verb}" for verb in ("update", "delete")]
# restrict_violation (23001) is an integrity error, as SQLite's RAISE(ABORT) is: both backends
# raise django.db.IntegrityError.
_POSTGRES_CREATE = [
    f"""CREATE OR REPLACE FUNCTION {AUDIT_TABLE}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{_REFUSAL}: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END $$""",
    f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_no_change ON {AUDIT_TABLE}",
    f"CREATE TRIGGER {AUDIT_TABLE}_no_change BEFORE UPDATE OR DELETE ON {AUDIT_TABLE} "
    f"FOR EACH ROW EXECUTE FUNCTION {AUDIT_TABLE}_refuse()",
    f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_no_truncate ON {AUDIT_TABLE}",
    f"CREATE TRIGGER {AUDIT_TABLE}_no_truncate BEFORE TRUNCATE ON {AUDIT_TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {AUDIT_TABLE}_refuse()",
]
_POSTGRES_DROP = [
    f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_no_change ON {AUDIT_TABLE}",
    f"DROP TRIGGER IF EXISTS {AUDIT_TABLE}_no_truncate ON {AUDIT_TABLE}",
]
_TRIGGER_SQL = {"sqlite": (_SQLITE_CREATE, _SQLITE_DROP), "postgresql": (_POSTGRES_CREATE, _POSTGRES_DROP)}


def _statements(connection: BaseDatabaseWrapper, *, create: bool) -> list[str]:
    try:
        create_sql, drop_sql = _TRIGGER_SQL[connection.vendor]
    except KeyError:
        raise NotImplementedError(
            f"The audit trail's append-only triggers exist for PostgreSQL and SQLite, not {connection.vendor}"
        ) from None
    return create_sql if create else drop_sql


def audit_triggers_create(*, connection: BaseDatabaseWrapper) -> None:
    """Make the audit table refuse UPDATE, DELETE and TRUNCATE (idempotent)."""
    with connection.cursor() as cursor:
        for statement in _statements(connection, create=True):
            cursor.execute(statement)


def audit_triggers_drop(*, connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        for statement in _statements(connection, create=False):
            cursor.execute(statement)


def audit_trigger_names(*, connection: BaseDatabaseWrapper) -> set[str]:
    """The append-only triggers present on the audit table (a table rebuild would lose them)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [AUDIT_TABLE])
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [AUDIT_TABLE]
            )
        return {row[0] for row in cursor.fetchall()}
