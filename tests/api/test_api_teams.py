"""Teams through the API over real HTTP: list, create, detail with members, add, change role,
remove, leave — the team pages' rules and words (accounts services and selectors) for the owner,
a member, a stranger (404) and anonymous."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import Team, TeamMembership, TeamRole
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def team_url(team: Any, rest: str = "") -> str:
    return f"/api/v1/teams/{team.code}/{rest}"


def test_anonymous_gets_no_team_endpoint(web: Any, team: Any, member: Any) -> None:
    client = web()
    # No credentials: 401 (with WWW-Authenticate: Bearer), in the one error shape.
    for response in (
        client.get("/api/v1/teams/"),
        client.get(team_url(team)),
        client.post("/api/v1/teams/", json={"name": "X"}),
        client.post(team_url(team, "members/"), json={"username": "x"}),
        client.post(team_url(team, "leave/")),
    ):
        assert response.status_code == 401
        assert "error" in response.json()
    assert Team.objects.count() == 1


def test_list_shows_my_teams_with_my_role_and_member_count(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    response = web(member).get("/api/v1/teams/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert body["results"][0]["code"] == str(team.code)
    assert body["results"][0]["my_role"] == "member"
    assert body["results"][0]["member_count"] == 2
    response = web(stranger).get("/api/v1/teams/")
    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_detail_lists_members_owners_first_to_members_only(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    response = web(member).get(team_url(team))
    assert response.status_code == 200
    members = response.json()["members"]
    assert [(m["user"]["username"], m["role"]) for m in members] == [
        (owner.username, "owner"),
        (member.username, "member"),
    ]
    assert members[1]["user"]["code"] == str(member.code)
    response = web(stranger).get(team_url(team))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert web(owner).get("/api/v1/teams/6f1d2c3e-0000-4000-8000-000000000000/").status_code == 404


def test_create_makes_me_its_owner_and_is_audited(web: Any, stranger: Any) -> None:
    response = web(stranger).post("/api/v1/teams/", json={"name": "  Robotics ", "description": "arms"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Robotics" and body["my_role"] == "owner"
    team = Team.objects.get(code=body["code"])
    assert TeamMembership.objects.get(team=team).user == stranger
    assert AuditEvent.objects.filter(action="team.created", target_code=team.code).exists()


def test_create_refuses_a_blank_or_too_long_name_and_stores_nothing(web: Any, stranger: Any) -> None:
    client = web(stranger)
    for name in ("   ", "x" * 101):
        response = client.post("/api/v1/teams/", json={"name": name})
        assert response.status_code == 400, response.text
        assert "name" in response.json()["error"]["fields"]
    assert Team.objects.count() == 0


def test_owner_adds_a_member_and_a_member_or_stranger_cannot(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    response = web(member).post(team_url(team, "members/"), json={"username": stranger.username})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Only team owners can add members."
    other = web(stranger).post(team_url(team, "members/"), json={"username": stranger.username})
    assert other.status_code == 404
    assert not TeamMembership.objects.filter(team=team, user=stranger).exists()
    response = web(owner).post(team_url(team, "members/"), json={"username": stranger.username})
    assert response.status_code == 201, response.text
    assert stranger.username in [m["user"]["username"] for m in response.json()["members"]]
    assert AuditEvent.objects.filter(action="team.member_added").count() == 1


def test_adding_refuses_unknown_users_existing_members_and_bad_roles_with_the_pages_words(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    client = web(owner)
    response = client.post(team_url(team, "members/"), json={"username": "nobody_here"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["username"] == ["There is no user named “nobody_here”."]
    response = client.post(team_url(team, "members/"), json={"username": member.username})
    assert response.status_code == 400
    assert "already a member" in response.json()["error"]["message"]
    response = client.post(team_url(team, "members/"), json={"username": stranger.username, "role": "boss"})
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]
    assert TeamMembership.objects.filter(team=team).count() == 2


def test_owner_changes_a_role_and_the_last_owner_cannot_be_demoted(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    client = web(owner)
    response = client.session.patch(
        client.url(team_url(team, f"members/{owner.code}/")),
        json={"role": "member"},
        headers={"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "A team needs at least one owner: make someone else an owner first."
    )
    assert TeamMembership.objects.get(team=team, user=owner).role == TeamRole.OWNER
    response = client.session.patch(
        client.url(team_url(team, f"members/{member.code}/")),
        json={"role": "owner"},
        headers={"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")},
    )
    assert response.status_code == 200, response.text
    assert TeamMembership.objects.get(team=team, user=member).role == TeamRole.OWNER


def test_a_member_cannot_change_roles_or_remove_others(web: Any, owner: Any, member: Any, team: Any) -> None:
    client = web(member)
    headers = {"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")}
    response = client.session.patch(
        client.url(team_url(team, f"members/{member.code}/")), json={"role": "owner"}, headers=headers
    )
    assert response.status_code == 403
    response = client.session.delete(client.url(team_url(team, f"members/{owner.code}/")), headers=headers)
    assert response.status_code == 403
    assert TeamMembership.objects.get(team=team, user=member).role == TeamRole.MEMBER
    assert TeamMembership.objects.filter(team=team).count() == 2


def test_a_stranger_gets_404_on_every_member_endpoint(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    client = web(stranger)
    headers = {"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")}
    url = client.url(team_url(team, f"members/{member.code}/"))
    assert client.session.patch(url, json={"role": "owner"}, headers=headers).status_code == 404
    assert client.session.delete(url, headers=headers).status_code == 404
    assert client.post(team_url(team, "leave/")).status_code == 404
    assert TeamMembership.objects.filter(team=team).count() == 2


def test_owner_removes_a_member_and_a_member_leaves(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    TeamMembership.objects.create(team=team, user=stranger, role=TeamRole.MEMBER, added_by=owner)
    client = web(owner)
    response = client.session.delete(
        client.url(team_url(team, f"members/{stranger.code}/")),
        headers={"X-CSRFToken": client.csrf_token(), "Referer": client.url("/")},
    )
    assert response.status_code == 200, response.text
    assert not TeamMembership.objects.filter(team=team, user=stranger).exists()
    response = web(member).post(team_url(team, "leave/"))
    assert response.status_code == 200
    assert response.json()["message"] == f"You left {team.name}."
    assert not TeamMembership.objects.filter(team=team, user=member).exists()
    assert web(member).get(team_url(team)).status_code == 404


def test_the_last_owner_cannot_leave(web: Any, owner: Any, member: Any, team: Any) -> None:
    response = web(owner).post(team_url(team, "leave/"))
    assert response.status_code == 400
    assert "last owner" in response.json()["error"]["message"]
    assert TeamMembership.objects.filter(team=team, user=owner, role=TeamRole.OWNER).exists()
