"""Teams over real HTTP: create, add members, roles, last-owner protection, and the three
personas (owner, member, stranger) on every team page and action."""

from __future__ import annotations

import pytest

from accounts.models import Team, TeamMembership, TeamRole
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def _team_path(team: Team, suffix: str = "") -> str:
    return f"/accounts/teams/{team.code}/{suffix}"


def _member_path(team: Team, user, action: str) -> str:
    return _team_path(team, f"members/{user.code}/{action}/")


def _role(team: Team, user) -> str | None:
    membership = TeamMembership.objects.filter(team=team, user=user).first()
    return membership.role if membership else None


def _flash_text(client, team: Team) -> str:
    """The page the redirect lands on, where Django's messages are shown."""
    return client.get(_team_path(team)).text


# ----------------------------------------------------------------------------- create & list
def test_creating_a_team_makes_the_creator_its_owner_and_is_audited(web, stranger) -> None:
    client = web(user=stranger)
    response = client.post("/accounts/teams/new/", data={"name": "  Action Recognition ", "description": ""})
    assert response.status_code == 302
    team = Team.objects.get(name="Action Recognition")
    assert response.headers["Location"] == _team_path(team)
    assert _role(team, stranger) == TeamRole.OWNER
    assert team.created_by == stranger
    event = AuditEvent.objects.get(action="team.created")
    assert event.actor == stranger and event.target_code == team.code
    assert "Action Recognition" in client.get("/accounts/teams/").text


def test_a_team_needs_a_name(web, stranger) -> None:
    response = web(user=stranger).post("/accounts/teams/new/", data={"name": "   "})
    assert response.status_code == 400
    assert "errorlist" in response.text
    assert not Team.objects.exists()


def test_team_list_shows_only_my_teams_with_my_role(web, team, owner, member, stranger) -> None:
    Team.objects.create(name="Someone Else's Lab")
    pages = {}
    for persona in (owner, member, stranger):
        response = web(user=persona).get("/accounts/teams/")
        assert response.status_code == 200
        pages[persona] = response.text
    owner_page, member_page, stranger_page = pages[owner], pages[member], pages[stranger]
    assert "Vision Lab" in owner_page and "Someone Else" not in owner_page
    assert "badge-owner" in owner_page
    assert "Vision Lab" in member_page and "badge-member" in member_page
    assert "Vision Lab" not in stranger_page
    assert "not in any team" in stranger_page


def test_team_detail_lists_members_with_roles(web, team, owner, member) -> None:
    response = web(user=member).get(_team_path(team))
    assert response.status_code == 200
    page = response.text
    assert owner.username in page and member.username in page
    assert "badge-owner" in page and "badge-member" in page
    # Members do not get the owner-only controls.
    assert "member-add-form" not in page
    owner_page = web(user=owner).get(_team_path(team))
    assert owner_page.status_code == 200
    assert "member-add-form" in owner_page.text


# ----------------------------------------------------------------------------- add member
def test_owner_adds_a_member_by_username_with_a_role(web, team, owner, stranger) -> None:
    client = web(user=owner)
    response = client.post(
        _team_path(team, "members/add/"), data={"username": stranger.username.upper(), "role": "owner"}
    )
    assert response.status_code == 302
    assert _role(team, stranger) == TeamRole.OWNER
    assert TeamMembership.objects.get(team=team, user=stranger).added_by == owner
    event = AuditEvent.objects.get(action="team.member_added")
    assert event.team_id == team.pk and event.data["username"] == stranger.username
    assert event.data["role"] == "owner"
    assert "added to Vision Lab" in _flash_text(client, team)


def test_adding_an_unknown_username_shows_a_clear_form_error(web, team, owner) -> None:
    response = web(user=owner).post(
        _team_path(team, "members/add/"), data={"username": "nobody_here", "role": "member"}
    )
    assert response.status_code == 400
    assert "There is no user named “nobody_here”" in response.text
    assert TeamMembership.objects.filter(team=team).count() == 2
    assert not AuditEvent.objects.filter(action="team.member_added").exists()


def test_adding_someone_already_in_the_team_shows_a_clear_error(web, team, owner, member) -> None:
    response = web(user=owner).post(
        _team_path(team, "members/add/"), data={"username": member.username, "role": "owner"}
    )
    assert response.status_code == 400
    assert f"{member.username} is already a member of Vision Lab" in response.text
    assert _role(team, member) == TeamRole.MEMBER  # not silently promoted


def test_adding_with_an_unknown_role_is_refused(web, team, owner, stranger) -> None:
    response = web(user=owner).post(
        _team_path(team, "members/add/"), data={"username": stranger.username, "role": "admin"}
    )
    assert response.status_code == 400
    assert _role(team, stranger) is None


# ----------------------------------------------------------------------------- roles
def test_owner_promotes_and_demotes_a_member(web, team, owner, member) -> None:
    client = web(user=owner)
    assert client.post(_member_path(team, member, "role"), data={"role": "owner"}).status_code == 302
    assert _role(team, member) == TeamRole.OWNER
    assert client.post(_member_path(team, member, "role"), data={"role": "member"}).status_code == 302
    assert _role(team, member) == TeamRole.MEMBER
    changes = AuditEvent.objects.filter(action="team.member_role_changed").order_by("pk")
    assert [(e.data["from"], e.data["to"]) for e in changes] == [("member", "owner"), ("owner", "member")]


def test_the_last_owner_cannot_be_demoted(web, team, owner) -> None:
    client = web(user=owner)
    response = client.post(_member_path(team, owner, "role"), data={"role": "member"})
    assert response.status_code == 302
    assert _role(team, owner) == TeamRole.OWNER
    assert "at least one owner" in _flash_text(client, team)


def test_an_owner_can_step_down_once_there_is_another_owner(web, team, owner, member) -> None:
    TeamMembership.objects.filter(team=team, user=member).update(role=TeamRole.OWNER)
    client = web(user=owner)
    client.post(_member_path(team, owner, "role"), data={"role": "member"})
    assert _role(team, owner) == TeamRole.MEMBER
    # Now a member: managing the team is forbidden.
    assert client.post(_member_path(team, member, "role"), data={"role": "member"}).status_code == 403


# ----------------------------------------------------------------------------- remove & leave
def test_owner_removes_a_member(web, team, owner, member) -> None:
    client = web(user=owner)
    assert client.post(_member_path(team, member, "remove")).status_code == 302
    assert _role(team, member) is None
    event = AuditEvent.objects.get(action="team.member_removed")
    assert event.actor == owner and event.data["username"] == member.username
    # The removed member no longer sees the team at all.
    assert web(user=member).get(_team_path(team)).status_code == 404


def test_the_last_owner_cannot_be_removed_or_leave(web, team, owner) -> None:
    client = web(user=owner)
    assert client.post(_member_path(team, owner, "remove")).status_code == 302
    assert client.post(_team_path(team, "leave/")).status_code == 302
    assert _role(team, owner) == TeamRole.OWNER
    assert "last owner" in _flash_text(client, team)


def test_a_member_can_leave(web, team, member) -> None:
    client = web(user=member)
    response = client.post(_team_path(team, "leave/"))
    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/teams/"
    assert _role(team, member) is None
    assert AuditEvent.objects.get(action="team.member_left").actor == member


def test_removing_someone_not_in_the_team_is_404(web, team, owner, stranger) -> None:
    assert web(user=owner).post(_member_path(team, stranger, "remove")).status_code == 404


# ----------------------------------------------------------------------------- personas
def _every_action(team: Team, owner, member, stranger) -> list[tuple[str, str, dict]]:
    """(method, path, data) for every team page and action, aimed at a real target."""
    return [
        ("get", _team_path(team), {}),
        ("post", _team_path(team, "members/add/"), {"username": stranger.username, "role": "member"}),
        ("post", _member_path(team, owner, "role"), {"role": "member"}),
        ("post", _member_path(team, member, "role"), {"role": "owner"}),
        ("post", _member_path(team, owner, "remove"), {}),
        ("post", _member_path(team, member, "remove"), {}),
        ("post", _team_path(team, "leave/"), {}),
    ]


def test_a_stranger_gets_404_on_every_team_page_and_action(web, team, owner, member, stranger) -> None:
    client = web(user=stranger)
    for method, path, data in _every_action(team, owner, member, stranger):
        response = client.get(path) if method == "get" else client.post(path, data=data)
        assert response.status_code == 404, (method, path, response.status_code)
    assert sorted(TeamMembership.objects.filter(team=team).values_list("user__username", "role")) == [
        (member.username, "member"),
        (owner.username, "owner"),
    ]
    assert not AuditEvent.objects.exists()


def test_a_member_gets_403_on_every_owner_action(web, team, owner, member, stranger) -> None:
    client = web(user=member)
    # Leaving (and removing oneself, which is the same) is the one write a member may do.
    own_exits = {_team_path(team, "leave/"), _member_path(team, member, "remove")}
    owner_actions = [
        action
        for action in _every_action(team, owner, member, stranger)
        if action[0] == "post" and action[1] not in own_exits
    ]
    for _, path, data in owner_actions:
        response = client.post(path, data=data)
        assert response.status_code == 403, (path, response.status_code)
    # Even an empty add form is forbidden rather than "username required".
    assert client.post(_team_path(team, "members/add/"), data={}).status_code == 403
    assert _role(team, owner) == TeamRole.OWNER and _role(team, member) == TeamRole.MEMBER
    assert _role(team, stranger) is None
    assert not AuditEvent.objects.exists()


def test_anonymous_visitors_are_sent_to_login(web, team) -> None:
    client = web()
    response = client.get(_team_path(team))
    assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"]
    response = client.post(_team_path(team, "leave/"))
    assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"]
    assert TeamMembership.objects.filter(team=team).count() == 2


def test_team_urls_use_the_code_not_the_primary_key(web, team, owner) -> None:
    client = web(user=owner)
    assert client.get(f"/accounts/teams/{team.pk}/").status_code == 404
    page = client.get("/accounts/teams/").text
    assert str(team.code) in page


def test_actions_refuse_get(web, team, owner, member) -> None:
    client = web(user=owner)
    for path in (
        _team_path(team, "members/add/"),
        _member_path(team, member, "remove"),
        _team_path(team, "leave/"),
    ):
        assert client.get(path).status_code == 405
    assert _role(team, member) == TeamRole.MEMBER


# ----------------------------------------------------------------------------- admin
def test_admin_lists_users_and_teams_with_search_and_filters(web, team, owner, member, stranger) -> None:
    owner.is_staff = owner.is_superuser = True
    owner.save(update_fields=["is_staff", "is_superuser"])
    client = web(user=owner)
    users = client.get("/admin/accounts/user/?q=mark")
    assert users.status_code == 200
    assert member.username in users.text and stranger.username not in users.text
    assert 'id="changelist-filter"' in users.text
    teams = client.get("/admin/accounts/team/?q=Vision")
    assert teams.status_code == 200 and "Vision Lab" in teams.text
    detail = client.get(f"/admin/accounts/team/{team.pk}/change/")
    assert detail.status_code == 200
    assert "memberships-TOTAL_FORMS" in detail.text  # the membership inline
    assert client.get("/admin/django_q/").status_code == 200


def test_admin_is_closed_to_non_staff(web, member) -> None:
    response = web(user=member).get("/admin/accounts/team/")
    assert response.status_code == 302 and "/admin/login/" in response.headers["Location"]


def test_team_list_counts_every_member_not_only_me(web, team, owner, member, stranger) -> None:
    from accounts.selectors import teams_of

    TeamMembership.objects.create(team=team, user=stranger, role=TeamRole.MEMBER, added_by=owner)
    Team.objects.create(name="Empty Lab")  # a team I am not in stays out of the list
    assert [(t.name, t.member_count) for t in teams_of(user=member)] == [("Vision Lab", 3)]
    page = web(user=member).get("/accounts/teams/").text
    assert '<td class="num">3</td>' in page


def test_an_owner_demoted_while_their_request_runs_is_refused_on_the_locked_rows(
    web, team, owner, member, stranger, monkeypatch
) -> None:
    from accounts import services

    TeamMembership.objects.create(team=team, user=stranger, role=TeamRole.OWNER, added_by=owner)
    original_lock = services._lock_memberships

    def demoted_just_before_the_lock(*, team):
        # Another owner demotes `owner` after the early permission check passed.
        TeamMembership.objects.filter(team=team, user=owner).update(role=TeamRole.MEMBER)
        return original_lock(team=team)

    monkeypatch.setattr(services, "_lock_memberships", demoted_just_before_the_lock)
    client = web(user=owner)
    assert client.post(_member_path(team, stranger, "role"), data={"role": "member"}).status_code == 403
    assert _role(team, stranger) == TeamRole.OWNER
    TeamMembership.objects.filter(team=team, user=owner).update(role=TeamRole.OWNER)
    assert client.post(_member_path(team, member, "remove")).status_code == 403
    assert _role(team, member) == TeamRole.MEMBER
    TeamMembership.objects.filter(team=team, user=owner).update(role=TeamRole.OWNER)
    response = client.post(
        _team_path(team, "members/add/"), data={"username": "nobody_new", "role": "member"}
    )
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action__startswith="team.member_").exists()
