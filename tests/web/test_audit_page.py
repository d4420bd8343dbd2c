"""The audit page (/audit/) and its CSV export over real HTTP: who sees which events, each
filter, the export's scoping and CSV-injection safety, bounded pages and a constant number of
queries; and that reads, downloads, re-runs, cancels, deletes and team changes are recorded with
the right actor, a deleted analysis leaving a tombstone with its hashes.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from audit.log import audit_log
from audit.models import AuditEvent
from tests.web.audit_factories import IMAGE_BYTES, RAW_MAPS_BYTES, audit_world, succeeded_analysis

pytestmark = pytest.mark.django_db(transaction=True)


# --------------------------------------------------------------------------- fixtures, helpers
@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def world(owner: Any, member: Any, stranger: Any, team: Any, media_root: Path) -> dict[str, Any]:
    return audit_world(owner=owner, member=member, stranger=stranger, team=team, media_root=media_root)


@pytest.fixture
def staff(db: None) -> Any:
    from tests.conftest import _make_user

    user = _make_user(username="stella_staff", email="stella@example.org")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def _codes(response: Any) -> set[str]:
    """The event codes listed on an audit page."""
    import re

    return set(
        re.findall(r'data-testid="audit-row" data-action="[^"]*" data-code="([0-9a-f-]{36})"', response.text)
    )


def _actions(response: Any) -> list[str]:
    import re

    return re.findall(r'data-testid="audit-row" data-action="([^"]*)"', response.text)


def _csv_rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


@pytest.fixture
def trail(world: dict[str, Any], owner: Any, member: Any, stranger: Any, team: Any) -> dict[str, AuditEvent]:
    """One event of each kind the scoping rule distinguishes."""
    return {
        # owner acts on their own object
        "owner_on_own": audit_log(actor=owner, action="classifier.updated", target=world["kinetics"]),
        # member acts on owner's object: owner sees it (their object), member sees it (they did it)
        "member_on_owners": audit_log(actor=member, action="analysis.viewed", target=world["analysis"]),
        # owner acts on member's object: both see it
        "owner_on_members": audit_log(actor=owner, action="classifier.viewed", target=world["member_net"]),
        # member acts on their own object
        "member_on_own": audit_log(actor=member, action="classifier.updated", target=world["member_net"]),
        # an event on the team the owner owns (by the owner); the member is not a team owner
        "team_event": audit_log(actor=owner, action="team.renamed", target=team, team=team),
        # the stranger on their own object
        "stranger_on_own": audit_log(actor=stranger, action="classifier.updated", target=world["secret"]),
    }


def _visible(trail: dict[str, AuditEvent], *names: str) -> set[str]:
    return {str(trail[name].code) for name in names}


# --------------------------------------------------------------------------- who sees what
def test_the_audit_page_needs_a_login(web: Any) -> None:
    for path in ("/audit/", "/audit/export.csv"):
        response = web().get(path)
        assert response.status_code == 302
        assert "/accounts/login/" in response.headers["Location"]


def test_each_user_sees_their_own_events_and_the_events_on_their_objects(
    web: Any, owner: Any, member: Any, stranger: Any, trail: dict[str, AuditEvent]
) -> None:
    expected = {
        owner: _visible(trail, "owner_on_own", "member_on_owners", "owner_on_members", "team_event"),
        member: _visible(trail, "member_on_owners", "owner_on_members", "member_on_own"),
        stranger: _visible(trail, "stranger_on_own"),
    }
    for user, codes in expected.items():
        response = web(user).get("/audit/")
        assert response.status_code == 200, user
        assert _codes(response) == codes, user.get_username()
    # The stranger reads none of the owner's object codes or names anywhere on the page.
    response = web(stranger).get("/audit/")
    assert response.status_code == 200
    assert str(trail["owner_on_own"].target_code) not in response.text


def test_staff_see_every_event(web: Any, staff: Any, trail: dict[str, AuditEvent]) -> None:
    response = web(staff).get("/audit/")
    assert response.status_code == 200
    assert _codes(response) == {str(event.code) for event in trail.values()}


def test_the_owner_of_a_team_sees_its_member_changes_and_a_member_does_not(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any
) -> None:
    from accounts.services import team_member_add

    added = team_member_add(actor=owner, team=team, username=stranger.get_username())
    event = AuditEvent.objects.get(action="team.member_added")
    assert event.actor == owner and event.data["username"] == stranger.get_username()
    assert added.user == stranger
    owner_page = web(owner).get("/audit/?action=team.")
    assert owner_page.status_code == 200
    assert _codes(owner_page) == {str(event.code)}
    member_page = web(member).get("/audit/?action=team.")
    assert member_page.status_code == 200
    assert _codes(member_page) == set()


def test_the_audit_module_names_the_team_owner_role_as_accounts_does() -> None:
    from accounts.models import TeamRole
    from audit.selectors import TEAM_OWNER_ROLE

    assert TEAM_OWNER_ROLE == TeamRole.OWNER


# --------------------------------------------------------------------------- filters
def test_each_filter_narrows_the_events_and_they_combine(
    web: Any, owner: Any, member: Any, team: Any, world: dict[str, Any], trail: dict[str, AuditEvent]
) -> None:
    client = web(owner)
    today = timezone.localdate()
    cases = {
        "actor=mark_member": _visible(trail, "member_on_owners"),
        "actor=MARK_MEMBER": _visible(trail, "member_on_owners"),
        "action=classifier.": _visible(trail, "owner_on_own", "owner_on_members"),
        "action=classifier.updated": _visible(trail, "owner_on_own"),
        "action=classifier": set(),  # neither a prefix (no dot at the end) nor an action
        "target_type=analysis": _visible(trail, "member_on_owners"),
        "target_type=team": _visible(trail, "team_event"),
        f"target={world['member_net'].code}": _visible(trail, "owner_on_members"),
        f"team={team.code}": _visible(
            trail, "owner_on_own", "member_on_owners", "owner_on_members", "team_event"
        ),
        f"created_after={today + timedelta(days=1)}": set(),
        f"created_before={today - timedelta(days=1)}": set(),
        f"created_after={today}&created_before={today}": _visible(
            trail, "owner_on_own", "member_on_owners", "owner_on_members", "team_event"
        ),
        f"actor=olivia_owner&action=classifier.&target={world['kinetics'].code}": _visible(
            trail, "owner_on_own"
        ),
    }
    for query, codes in cases.items():
        response = client.get(f"/audit/?{query}")
        assert response.status_code == 200, query
        assert "filter-errors" not in response.text, query
        assert _codes(response) == codes, query


def test_filters_that_do_not_parse_are_reported_and_ignored(
    web: Any, owner: Any, stranger: Any, trail: dict[str, AuditEvent]
) -> None:
    client = web(owner)
    everything = _codes(client.get("/audit/"))
    for query in (
        "target=not-a-uuid",
        "target_type=spaceship",
        "created_after=yesterday",
        "actor=" + "x" * 500,
        "action=" + "a." * 200,
    ):
        response = client.get(f"/audit/?{query}")
        assert response.status_code == 200, query
        assert 'data-testid="filter-errors"' in response.text, query
        assert _codes(response) == everything, query
    # A team the owner is not in is not a choice: refused, not a way to read another team's events.
    from accounts.models import Team

    other = Team.objects.create(name="Elsewhere", created_by=stranger)
    response = client.get(f"/audit/?team={other.code}")
    assert response.status_code == 200
    assert 'data-testid="filter-errors"' in response.text


@pytest.mark.parametrize("page", ["0", "-3", "abc", "9999999999999999999999", "999999", "2.5", ""])
def test_page_numbers_are_bounded(web: Any, owner: Any, trail: dict[str, AuditEvent], page: str) -> None:
    response = web(owner).get(f"/audit/?page={page}")
    assert response.status_code == 200
    assert len(_codes(response)) == 4


def test_the_page_runs_a_constant_number_of_queries(
    owner: Any, member: Any, team: Any, world: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(owner)
    queries = ["", "action=analysis.", f"team={team.code}", "actor=mark_member&target_type=analysis"]

    def counted() -> list[int]:
        counts = []
        for query in queries:
            with django_assert_max_num_queries(QUERY_PIN) as captured:
                response = client.get(f"/audit/?{query}")
            assert response.status_code == 200
            counts.append(len(captured))
        return counts

    audit_log(actor=member, action="analysis.viewed", target=world["analysis"])
    few = counted()
    for index in range(120):  # more than two pages, with every kind of row (actor, team, tombstone)
        audit_log(actor=member if index % 2 else owner, action="analysis.viewed", target=world["analysis"])
        audit_log(actor=owner, action="team.renamed", target=team, team=team)
    audit_log(actor=owner, action="analysis.deleted", target=world["analysis"], data={"title": "x"})
    assert counted() == few, few


QUERY_PIN = 8  # session, user, count, page, tombstones, team choices, team lookup (+1)


# --------------------------------------------------------------------------- CSV export
def test_the_csv_export_has_the_filtered_events_with_the_pages_scoping(
    web: Any, owner: Any, member: Any, stranger: Any, trail: dict[str, AuditEvent]
) -> None:
    response = web(owner).get("/audit/export.csv?action=classifier.")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = _csv_rows(response)
    assert {row["event_code"] for row in rows} == _visible(trail, "owner_on_own", "owner_on_members")
    row = next(row for row in rows if row["event_code"] == str(trail["owner_on_members"].code))
    assert row["action"] == "classifier.viewed"
    assert row["actor"] == "olivia_owner"
    assert row["object_owner"] == "mark_member"
    assert row["team"] == "Vision Lab"
    assert row["object_type"] == "classifier"
    # Unfiltered, each persona's export is what their page lists, nothing of the others'.
    for user, names in (
        (member, ("member_on_owners", "owner_on_members", "member_on_own")),
        (stranger, ("stranger_on_own",)),
    ):
        response = web(user).get("/audit/export.csv")
        assert response.status_code == 200
        assert {row["event_code"] for row in _csv_rows(response)} == _visible(trail, *names)


def test_the_csv_export_is_safe_from_formula_injection(
    web: Any, owner: Any, team: Any, world: dict[str, Any]
) -> None:
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD

    plotter = get_user_model().objects.create_user(username="@SUM", password=PASSWORD)
    team.name = "=HYPERLINK(1)"
    team.save(update_fields=["name"])
    audit_log(actor=plotter, action="analysis.viewed", target=world["analysis"], data={"note": "-2+3"})
    response = web(owner).get("/audit/export.csv")
    assert response.status_code == 200
    (row,) = [row for row in _csv_rows(response) if row["action"] == "analysis.viewed"]
    assert row["actor"] == "'@SUM"
    assert row["team"] == "'=HYPERLINK(1)"
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@")), row


# --------------------------------------------------------------------------- recording reads and writes
def test_reading_a_result_and_downloading_its_files_are_recorded_with_the_reader(
    web: Any, owner: Any, member: Any, world: dict[str, Any]
) -> None:
    analysis = world["analysis"]
    client = web(member)
    base = f"/analyses/{analysis.code}/"
    assert client.get(base).status_code == 200
    # The page's own image requests are not downloads: not recorded one by one.
    image = client.get(base + "files/conv3d/heatmap_000.png")
    assert image.status_code == 200 and image.content == IMAGE_BYTES
    assert _events("analysis.file_downloaded") == []
    download = client.get(base + "files/conv3d/heatmap_000.png?download=1")
    assert download.status_code == 200 and download.content == IMAGE_BYTES
    archive = client.get(base + "download.zip")
    assert archive.status_code == 200 and archive.content[:2] == b"PK"
    (viewed,) = _events("analysis.viewed")
    (downloaded,) = _events("analysis.file_downloaded")
    (zipped,) = _events("analysis.zip_downloaded")
    for event in (viewed, downloaded, zipped):
        assert event.actor == member and event.actor_username == "mark_member"
        assert event.target_code == analysis.code and event.subject_owner == owner
    assert downloaded.data["file"] == "conv3d/heatmap_000.png"
    assert zipped.data["file"] == f"analysis-{analysis.code.hex[:8]}.zip"


def test_the_stranger_reading_nothing_records_nothing(web: Any, stranger: Any, world: dict[str, Any]) -> None:
    analysis = world["analysis"]
    client = web(stranger)
    for path in ("", "files/conv3d/raw_maps.npz?download=1", "download.zip"):
        assert client.get(f"/analyses/{analysis.code}/{path}").status_code == 404
    assert AuditEvent.objects.filter(target_code=analysis.code).count() == 0


def test_rerun_cancel_and_team_changes_are_recorded_with_their_actor(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any, world: dict[str, Any]
) -> None:
    from accounts import services as team_services
    from analyses.runs.services import analysis_rerun

    analysis = world["analysis"]
    rerun = analysis_rerun(user=member, analysis=analysis, params_changes={"method": "layercam"})
    (rerun_event,) = _events("analysis.rerun")
    assert rerun_event.actor == member and rerun_event.target_code == analysis.code
    assert rerun_event.subject_owner == owner and rerun_event.data["rerun"] == str(rerun.code)
    created = AuditEvent.objects.get(action="analysis.created", target_code=rerun.code)
    assert created.actor == member and created.data["parent"] == str(analysis.code)
    assert created.subject_owner == member

    response = web(member).post(f"/analyses/{rerun.code}/cancel/")
    assert response.status_code == 302
    (cancelled,) = _events("analysis.cancelled")
    assert cancelled.actor == member and cancelled.target_code == rerun.code

    team_services.team_member_add(actor=owner, team=team, username=stranger.get_username())
    team_services.team_member_set_role(actor=owner, team=team, user=stranger, role="owner")
    team_services.team_member_remove(actor=owner, team=team, user=stranger)
    team_services.team_leave(user=member, team=team)
    recorded = [
        (event.action, event.actor_username, event.data.get("username"))
        for event in AuditEvent.objects.filter(action__startswith="team.").order_by("id")
    ]
    assert recorded == [
        ("team.member_added", "olivia_owner", "sam_stranger"),
        ("team.member_role_changed", "olivia_owner", "sam_stranger"),
        ("team.member_removed", "olivia_owner", "sam_stranger"),
        ("team.member_left", "mark_member", "mark_member"),
    ]


# --------------------------------------------------------------------------- tombstones
def test_deleting_an_analysis_leaves_a_tombstone_with_its_hashes_on_the_audit_page(
    web: Any, owner: Any, member: Any, stranger: Any, world: dict[str, Any], media_root: Path
) -> None:
    analysis = world["analysis"]
    folder = media_root / analysis.results_dir
    client = web(owner)
    assert client.get(f"/analyses/{analysis.code}/").status_code == 200
    response = client.post(f"/analyses/{analysis.code}/delete/")
    assert response.status_code == 302

    # The analysis, its files and its ZIP are gone.
    for path in ("", "files/conv3d/raw_maps.npz?download=1", "files/manifest.json", "download.zip"):
        assert client.get(f"/analyses/{analysis.code}/{path}").status_code == 404, path
    assert not folder.exists()

    (tombstone,) = _events("analysis.deleted")
    assert tombstone.actor == owner and tombstone.subject_owner == owner
    data = tombstone.data
    raw_sha = hashlib.sha256(RAW_MAPS_BYTES).hexdigest()
    assert data["raw_maps_sha256"] == {"conv3d/raw_maps.npz": raw_sha}
    assert data["input_hashes"] == {"model": world["kinetics"].sha256, "video": world["street"].sha256}
    assert data["classifier"] == {
        "code": str(world["kinetics"].code),
        "name": "Kinetics",
        "sha256": world["kinetics"].sha256,
    }
    assert data["video"]["name"] == "street" and data["video"]["sha256"] == world["street"].sha256
    assert data["title"] == "team-result" and data["params"]["method"] == "gradcam"
    assert data["owner"] == "olivia_owner" and data["team"] == "Vision Lab"

    # The audit page keeps every event of the analysis, marks it deleted, links it nowhere, and
    # shows the tombstone with its hashes.
    page = client.get(f"/audit/?target={analysis.code}")
    assert page.status_code == 200
    assert _actions(page) == ["analysis.deleted", "analysis.viewed"]
    assert 'data-testid="tombstone"' in page.text
    assert raw_sha in page.text and world["kinetics"].sha256 in page.text
    assert page.text.count('data-testid="object-deleted"') == 2
    assert f'href="/analyses/{analysis.code}/"' not in page.text
    # The team member sees the tombstone only where they acted; the stranger never.
    stranger_page = web(stranger).get(f"/audit/?target={analysis.code}")
    assert stranger_page.status_code == 200
    assert _codes(stranger_page) == set()
    assert raw_sha not in stranger_page.text


def test_a_team_owner_deleting_a_members_analysis_is_shown_to_that_member(
    web: Any, owner: Any, member: Any, team: Any, world: dict[str, Any], media_root: Path
) -> None:
    analysis = succeeded_analysis(
        owner=member,
        team=team,
        classifier=world["kinetics"],
        video=world["street"],
        media_root=media_root,
        title="member-result",
    )
    assert web(owner).post(f"/analyses/{analysis.code}/delete/").status_code == 302
    response = web(member).get("/audit/?action=analysis.deleted")
    assert response.status_code == 200
    (event,) = _events("analysis.deleted")
    assert _codes(response) == {str(event.code)}
    assert event.actor_username == "olivia_owner" and event.subject_owner_username == "mark_member"


def test_deleting_a_classifier_leaves_its_events_and_a_tombstone(
    web: Any, owner: Any, stranger: Any, team: Any, media_root: Path
) -> None:
    from tests.web.history_factories import make_classifier

    unused = make_classifier(owner=owner, name="Unused", labels=["a", "b"])
    audit_log(
        actor=owner, action="classifier.updated", target=unused, data={"name": {"from": "x", "to": "Unused"}}
    )
    client = web(owner)
    assert client.post(f"/classifiers/{unused.code}/delete/").status_code == 302
    assert client.get(f"/classifiers/{unused.code}/").status_code == 404
    (deleted,) = _events("classifier.deleted")
    assert deleted.data["sha256"] == unused.sha256 and deleted.data["name"] == "Unused"
    page = client.get(f"/audit/?target={unused.code}")
    assert page.status_code == 200
    assert _actions(page) == ["classifier.deleted", "classifier.updated"]
    assert unused.sha256 in page.text and 'data-testid="tombstone"' in page.text


# --------------------------------------------------------------------------- deactivated actors
def test_the_actors_username_stays_after_they_are_deactivated(
    web: Any, owner: Any, member: Any, staff: Any, team: Any, world: dict[str, Any]
) -> None:
    from accounts.services import user_deactivate

    assert web(member).get(f"/analyses/{world['analysis'].code}/").status_code == 200
    user_deactivate(actor=staff, user=member)
    response = web(owner).get("/audit/?actor=mark_member")
    assert response.status_code == 200
    assert _actions(response) == ["analysis.viewed"]
    assert "mark_member" in response.text and 'data-testid="actor-deactivated"' in response.text
    rows = _csv_rows(web(owner).get("/audit/export.csv?actor=mark_member"))
    assert [row["actor"] for row in rows] == ["mark_member"]


def test_downloading_an_uploaded_model_or_video_is_recorded_with_the_downloader(
    web: Any, owner: Any, member: Any, world: dict[str, Any], media_root: Path
) -> None:
    for obj, path in ((world["kinetics"], "classifiers"), (world["street"], "videos")):
        (media_root / obj.file.name).parent.mkdir(parents=True, exist_ok=True)
        (media_root / obj.file.name).write_bytes(b"uploaded " + path.encode())
    assert web(member).get(f"/classifiers/{world['kinetics'].code}/file/").status_code == 200
    assert web(owner).get(f"/videos/{world['street'].code}/original/").status_code == 200
    model_download = AuditEvent.objects.get(action="classifier.downloaded")
    assert model_download.actor == member and model_download.subject_owner == owner
    assert model_download.data == {"file": "Kinetics.keras", "sha256": world["kinetics"].sha256}
    video_download = AuditEvent.objects.get(action="video.downloaded")
    assert video_download.actor == owner and video_download.target_code == world["street"].code
    # A download that fails (the file is gone) records nothing.
    (media_root / world["kinetics"].file.name).unlink()
    assert web(owner).get(f"/classifiers/{world['kinetics'].code}/file/").status_code == 404
    assert AuditEvent.objects.filter(action="classifier.downloaded").count() == 1
