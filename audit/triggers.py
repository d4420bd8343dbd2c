"""The database side of "append-only": triggers that refuse UPDATE, DELETE (and on PostgreSQL
TRUNCATE) of audit rows, in one place for analyses migration 0002 (which created them when the
table belonged to that app) and the test helper that must lift them around pytest-django's flush.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

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
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [AUDIT_TABLE]
            )
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [AUDIT_TABLE],
            )
        return {row[0] for row in cursor.fetchall()}
