"""The audit trail is append-only in the ORM and in the database (on whichever database the
suite runs: SQLite, or PostgreSQL in CI), keeps the actor's username, and users are
deactivated instead of deleted."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError

from accounts import services
from accounts.models import TeamMembership, TeamRole
from audit.log import audit_log
from audit.models import AuditEvent
from audit.triggers import AUDIT_TABLE, audit_trigger_names
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def event(owner: Any, team: Any) -> AuditEvent:
    return audit_log(actor=owner, action="team.created", target=team, team=team, data={"name": team.name})


@pytest.fixture
def admin_client(web: Any) -> Any:
    admin_user = get_user_model().objects.create_superuser(
        username="root_admin", email="root@example.org", password=PASSWORD
    )
    return web(admin_user)


def _raw(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


# --------------------------------------------------------------------------- append-only
_REFUSED_SQL = [
    f"UPDATE {AUDIT_TABLE} SET action = 'team.forged'",
    f"UPDATE {AUDIT_TABLE} SET actor_id = NULL",
    f"DELETE FROM {AUDIT_TABLE}",
]
if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
    _REFUSED_SQL.append(f"TRUNCATE {AUDIT_TABLE} CASCADE")  # SQLite has no TRUNCATE


@pytest.mark.parametrize("sql", _REFUSED_SQL)
def test_the_database_refuses_raw_updates_and_deletes_of_audit_rows(event: AuditEvent, sql: str) -> None:
    with pytest.raises(IntegrityError, match="append-only"):
        _raw(sql)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.actor_id) == ("team.created", event.actor_id)


def test_the_append_only_triggers_are_installed_by_the_migrations() -> None:
    # A later migration that rebuilds the table (SQLite does for most AlterFields) would drop
    # them silently: this notices.
    expected = {
        "sqlite": {f"{AUDIT_TABLE}_no_update", f"{AUDIT_TABLE}_no_delete"},
        "postgresql": {f"{AUDIT_TABLE}_no_change", f"{AUDIT_TABLE}_no_truncate"},
    }[connection.vendor]
    assert audit_trigger_names(connection=connection) == expected


def test_bulk_updates_and_deletes_are_refused_by_the_orm(event: AuditEvent) -> None:
    for write in (
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="team.forged"),
        lambda: AuditEvent.objects.all().delete(),
        lambda: AuditEvent.objects.bulk_update([event], ["action"]),
        lambda: event.delete(),
        lambda: event.save(),
    ):
        with pytest.raises(ValidationError, match="append-only"):
            write()
    assert AuditEvent.objects.get(pk=event.pk).action == "team.created"


def test_users_and_teams_with_events_cannot_be_deleted(event: AuditEvent, owner: Any, team: Any) -> None:
    with pytest.raises(ProtectedError):
        owner.delete()
    with pytest.raises(ProtectedError):
        team.delete()
    assert AuditEvent.objects.get(pk=event.pk).actor_id == owner.pk


def test_each_event_keeps_the_username_of_its_actor(event: AuditEvent, owner: Any) -> None:
    assert event.actor_username == "olivia_owner"
    owner.username = "olivia_renamed"
    owner.save(update_fields=["username"])
    assert AuditEvent.objects.get(pk=event.pk).actor_username == "olivia_owner"
    anonymous = audit_log(actor=None, action="system.reaped")
    assert anonymous.actor_id is None and anonymous.actor_username == ""


# --------------------------------------------------------------------------- deactivation
def test_the_admin_cannot_delete_users(admin_client: Any, team: Any, member: Any) -> None:
    assert admin_client.get(f"/admin/accounts/user/{member.pk}/delete/").status_code == 403
    changelist = admin_client.get("/admin/accounts/user/")
    assert changelist.status_code == 200
    assert 'value="delete_selected"' not in changelist.text and 'value="deactivate_users"' in changelist.text
    response = admin_client.post(
        "/admin/accounts/user/",
        data={"action": "delete_selected", "_selected_action": str(member.pk), "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert get_user_model().objects.filter(pk=member.pk).exists()
    assert TeamMembership.objects.filter(user=member).exists()


def test_deactivating_a_user_in_the_admin_is_audited_and_ends_their_sessions(
    admin_client: Any, web: Any, team: Any, member: Any
) -> None:
    member_session = web(member)
    assert member_session.get("/accounts/teams/").status_code == 200
    response = admin_client.post(
        "/admin/accounts/user/", data={"action": "deactivate_users", "_selected_action": str(member.pk)}
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert not member.is_active
    event = AuditEvent.objects.get(action="user.deactivated")
    assert event.actor_username == "root_admin" and event.target_code == member.code
    assert event.data["username"] == member.username
    assert TeamMembership.objects.filter(team=team, user=member).exists()  # kept, not deleted
    after = member_session.get("/accounts/teams/")
    assert after.status_code == 302 and "/accounts/login/" in after.headers["Location"]
    refused = web().post("/accounts/login/", data={"username": member.username, "password": PASSWORD})
    assert refused.status_code == 200 and "correct username and password" in refused.text


def test_the_last_owner_of_a_team_with_members_is_not_deactivated(
    admin_client: Any, team: Any, owner: Any, member: Any
) -> None:
    response = admin_client.post(
        "/admin/accounts/user/",
        data={"action": "deactivate_users", "_selected_action": str(owner.pk)},
        allow_redirects=True,
    )
    assert response.status_code == 200
    # The admin capitalises messages ("Olivia_owner is ...").
    assert "livia_owner is the last owner of Vision Lab, which has other members" in response.text
    owner.refresh_from_db()
    assert owner.is_active
    assert not AuditEvent.objects.filter(action="user.deactivated").exists()
    TeamMembership.objects.filter(team=team, user=member).update(role=TeamRole.OWNER)
    assert (
        services.user_deactivate(actor=get_user_model().objects.get(username="root_admin"), user=owner)
        is True
    )


def test_deactivation_is_refused_for_oneself_and_reactivation_is_audited(owner: Any, member: Any) -> None:
    with pytest.raises(ValidationError, match="your own account"):
        services.user_deactivate(actor=owner, user=owner)
    assert services.user_deactivate(actor=owner, user=member) is True
    assert services.user_deactivate(actor=owner, user=member) is False  # already inactive: no second event
    assert services.user_reactivate(actor=owner, user=member) is True
    assert list(AuditEvent.objects.order_by("pk").values_list("action", flat=True)) == [
        "user.deactivated",
        "user.reactivated",
    ]
