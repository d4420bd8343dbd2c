"""The admin site goes through the same rules as the pages: no delete that bypasses the
services, no edits of the state a run's worker owns, and every edit audited. Every list, add
and change page of every registered model opens."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task
from django_q.signing import SignedPackage

from accounts.models import ApiToken, TeamMembership, TeamRole
from analyses.models import Analysis, Classifier, Video
from audit.log import audit_log
from audit.models import AuditEvent
from tests.web.library_factories import (  # noqa: F401 - fixtures
    code_from_location,
    model_files,
    private_media_root,
    upload_model,
    upload_video,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_client(web: Any) -> Any:
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD

    admin_user = get_user_model().objects.create_superuser(
        username="root_admin", email="root@example.org", password=PASSWORD
    )
    return web(admin_user)


@pytest.fixture
def library(
    web: Any, owner: Any, team: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> dict[str, Any]:
    client = web(owner)
    classifier = Classifier.objects.get(
        code=code_from_location(
            upload_model(client, model_files["good_h5"], team=str(team.pk)), prefix="/classifiers/"
        )
    )
    video = Video.objects.get(
        code=code_from_location(
            upload_video(client, video_files["mp4"], team=str(team.pk)), prefix="/videos/"
        )
    )
    analysis = Analysis.objects.create(
        owner=owner, team=team, classifier=classifier, video=video, title="Run 1"
    )
    return {"classifier": classifier, "video": video, "analysis": analysis}


# --------------------------------------------------------------------------- every page
def _classifier(owner: Any, team: Any) -> Classifier:
    return Classifier.objects.create(
        owner=owner,
        team=team,
        name="tiny_c3d",
        file="classifiers/3f0c.h5",
        original_filename="tiny_c3d.h5",
        file_format="h5",
        sha256=uuid.uuid4().hex * 2,
        size_bytes=123_456,
        input_shape=[4, 16, 16, 3],
        num_classes=3,
        conv3d_layers=["conv3d_a", "conv3d_b"],
    )


def _video(owner: Any, team: Any) -> Video:
    return Video.objects.create(
        owner=owner,
        team=team,
        name="clip",
        file="videos/9a1b.avi",
        rendition="videos/9a1b.mp4",
        poster="videos/9a1b.jpg",
        original_filename="clip.avi",
        sha256=uuid.uuid4().hex * 2,
        size_bytes=654_321,
        width=32,
        height=24,
        fps=8.0,
        duration_seconds=2.0,
        frame_count=16,
    )


def _analysis(owner: Any, team: Any) -> Analysis:
    return Analysis.objects.create(
        owner=owner, team=team, classifier=_classifier(owner, team), video=_video(owner, team), title="Run 1"
    )


def _share(owner: Any, team: Any) -> Any:
    from analyses.models import Share

    return Share.objects.create(analysis=_analysis(owner, team), team=team, created_by=owner)


def _verification(owner: Any, team: Any) -> Any:
    from analyses.models import Verification

    return Verification.objects.create(analysis=_analysis(owner, team), requested_by=owner)


def _share_link(owner: Any, team: Any) -> Any:
    from datetime import timedelta

    from analyses.models import ShareLink

    return ShareLink.objects.create(
        analysis=_analysis(owner, team),
        token_sha256="0" * 64,
        created_by=owner,
        expires_at=timezone.now() + timedelta(days=7),
    )


def _task(*, success: bool) -> Any:
    now = timezone.now()
    return Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"task-{success}",
        func="math.floor",
        args=(1.5,),
        kwargs={},
        started=now,
        stopped=now,
        success=success,
        result=2 if success else "Traceback: boom",
    )


def _queued_task() -> Any:
    package = {"id": uuid.uuid4().hex, "name": "queued", "func": "math.floor", "args": (2.5,), "kwargs": {}}
    return OrmQ.objects.create(key="gradcam", payload=SignedPackage.dumps(package), lock=timezone.now())


def _axes_row(model: Any, **extra: Any) -> Any:
    return model.objects.create(
        username="olivia_owner",
        ip_address="127.0.0.1",
        user_agent="pytest",
        http_accept="text/html",
        path_info="/accounts/login/",
        **extra,
    )


# label -> (builder of one object, status of its add page). A model registered later fails
# the test below until it is listed here, so every admin page stays covered.
_ADMIN_CASES: dict[str, tuple[Callable[[Any, Any], Any], int]] = {
    "auth.group": (lambda owner, team: Group.objects.create(name="Reviewers"), 200),
    "accounts.user": (lambda owner, team: owner, 200),
    "accounts.team": (lambda owner, team: team, 200),
    "accounts.teammembership": (lambda owner, team: TeamMembership.objects.get(team=team, user=owner), 403),
    "accounts.apitoken": (
        lambda owner, team: ApiToken.objects.create(
            user=owner, name="CI", prefix="AbCdEfGh", key_sha256="0" * 64
        ),
        403,
    ),
    "analyses.classifier": (_classifier, 403),
    "analyses.video": (_video, 403),
    "analyses.analysis": (_analysis, 403),
    "analyses.share": (lambda owner, team: _share(owner, team), 403),
    "analyses.verification": (lambda owner, team: _verification(owner, team), 403),
    "analyses.sharelink": (lambda owner, team: _share_link(owner, team), 403),
    "audit.auditevent": (
        lambda owner, team: audit_log(
            actor=owner, action="team.created", target=team, data={"name": team.name}
        ),
        403,
    ),
    "django_q.schedule": (
        lambda owner, team: Schedule.objects.create(
            name="reaper", func="math.floor", schedule_type="I", minutes=5, repeats=-1
        ),
        200,
    ),
    "django_q.success": (lambda owner, team: _task(success=True), 403),
    "django_q.failure": (lambda owner, team: _task(success=False), 403),
    "django_q.ormq": (lambda owner, team: _queued_task(), 403),
    "axes.accessattempt": (
        lambda owner, team: _axes_row(
            AccessAttempt, get_data="", post_data="username=olivia_owner", failures_since_start=2
        ),
        403,
    ),
    "axes.accesslog": (lambda owner, team: _axes_row(AccessLog), 403),
    "axes.accessfailurelog": (lambda owner, team: _axes_row(AccessFailureLog, locked_out=False), 403),
}


def test_every_admin_list_add_and_change_page_opens_with_objects_present(
    admin_client: Any, owner: Any, team: Any
) -> None:
    from django.contrib import admin

    registered = {model._meta.label_lower: model for model in admin.site._registry}
    assert set(registered) - set(_ADMIN_CASES) == set(), "registered in the admin without a case here"
    objects = {label: _ADMIN_CASES[label][0](owner, team) for label in registered}
    failures = []
    for label, obj in objects.items():
        app_label, model_name = label.split(".")
        base = f"/admin/{app_label}/{model_name}/"
        expected = [(base, 200), (f"{base}add/", _ADMIN_CASES[label][1]), (f"{base}{obj.pk}/change/", 200)]
        for path, status in expected:
            response = admin_client.get(path)
            if response.status_code != status:
                failures.append(f"{path}: {response.status_code}, expected {status}")
            elif path == base and f"{base}{obj.pk}/change/" not in response.text:
                failures.append(f"{path}: the object {obj.pk} is not listed")
    assert failures == []


def test_file_fields_show_the_stored_name_and_never_a_media_url(
    admin_client: Any, owner: Any, team: Any
) -> None:
    classifier, video = _classifier(owner, team), _video(owner, team)
    page = admin_client.get(f"/admin/analyses/classifier/{classifier.pk}/change/")
    assert page.status_code == 200
    assert "classifiers/3f0c.h5 (120.6\xa0KB)" in page.text.replace("&nbsp;", "\xa0")
    page = admin_client.get(f"/admin/analyses/video/{video.pk}/change/")
    assert page.status_code == 200
    for name in ("videos/9a1b.avi", "videos/9a1b.mp4", "videos/9a1b.jpg"):
        assert name in page.text
    assert 'href="None' not in page.text and 'href="videos/' not in page.text


def test_admin_cannot_delete_what_only_the_services_may_delete(
    admin_client: Any, library: dict[str, Any]
) -> None:
    for model_name in ("classifier", "video", "analysis"):
        obj = library[model_name]
        assert admin_client.get(f"/admin/analyses/{model_name}/{obj.pk}/delete/").status_code == 403
        changelist = admin_client.get(f"/admin/analyses/{model_name}/")
        assert changelist.status_code == 200 and 'value="delete_selected"' not in changelist.text
        response = admin_client.post(
            f"/admin/analyses/{model_name}/",
            data={"action": "delete_selected", "_selected_action": str(obj.pk), "post": "yes"},
        )
        assert response.status_code in (200, 302)
    assert Classifier.objects.count() == Video.objects.count() == Analysis.objects.count() == 1
    assert Path(library["classifier"].file.path).is_file()
    assert Path(library["video"].rendition.path).is_file()


def test_admin_cannot_change_the_state_a_run_owns_and_audits_what_it_may_change(
    admin_client: Any, library: dict[str, Any]
) -> None:
    analysis = library["analysis"]
    url = f"/admin/analyses/analysis/{analysis.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    page = response.text
    assert 'name="title"' in page
    for field in (
        "status",
        "progress",
        "attempts",
        "max_attempts",
        "cancel_requested",
        "worker_lease",
        "expected_class",
        "parent",
    ):
        assert f'name="{field}"' not in page, field
    response = admin_client.post(
        url,
        data={
            "title": "Renamed run",
            "team": "",
            "status": "succeeded",
            "max_attempts": "99",
            "cancel_requested": "on",
            "worker_lease": "host:1:2",
            "progress": "1",
        },
    )
    assert response.status_code == 302, response.text[:3000]
    analysis.refresh_from_db()
    assert analysis.title == "Renamed run" and analysis.team is None
    assert analysis.status == "queued" and analysis.max_attempts != 99
    assert not analysis.cancel_requested and analysis.worker_lease == "" and analysis.progress == 0
    event = AuditEvent.objects.get(action="analysis.updated")
    assert event.actor.username == "root_admin" and event.data["via"] == "admin"
    assert event.data["title"] == {"from": "Run 1", "to": "Renamed run"}


def test_admin_edits_of_a_classifier_are_audited(admin_client: Any, library: dict[str, Any]) -> None:
    classifier = library["classifier"]
    url = f"/admin/analyses/classifier/{classifier.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'name="class_labels"' not in page.text  # validated by the service only
    response = admin_client.post(
        url,
        data={
            "name": "Renamed by admin",
            "description": "",
            "team": str(classifier.team_id),
            "archived_at_0": "",
            "archived_at_1": "",
        },
    )
    assert response.status_code == 302, response.text[:3000]
    event = AuditEvent.objects.get(action="classifier.updated")
    assert event.target_code == classifier.code
    assert event.data["name"] == {"from": "tiny_c3d", "to": "Renamed by admin"}


def _team_form(team: Any, rows: list[dict[str, Any]]) -> dict[str, str]:
    data = {
        "name": team.name,
        "description": team.description,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for r in rows if r.get("id"))),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{index}-{key}"] = str(value)
        data[f"memberships-{index}-team"] = str(team.pk)
    return data


def test_admin_membership_edits_are_audited_and_keep_an_owner(
    admin_client: Any, team: Any, owner: Any, member: Any, stranger: Any
) -> None:
    mine = TeamMembership.objects.get(team=team, user=owner)
    theirs = TeamMembership.objects.get(team=team, user=member)
    url = f"/admin/accounts/team/{team.pk}/change/"
    response = admin_client.post(
        url,
        data=_team_form(
            team,
            [
                {"id": mine.pk, "user": owner.pk, "role": "owner"},
                {"id": theirs.pk, "user": member.pk, "role": "owner"},
                {"user": stranger.pk, "role": "member"},
            ],
        ),
    )
    assert response.status_code == 302, response.text[:3000]
    events = {e.action: e.data for e in AuditEvent.objects.filter(action__startswith="team.")}
    assert events["team.member_role_changed"]["username"] == member.username
    assert (events["team.member_role_changed"]["from"], events["team.member_role_changed"]["to"]) == (
        "member",
        "owner",
    )
    assert events["team.member_added"]["username"] == stranger.username
    assert all(data["via"] == "admin" for data in events.values())

    newest = TeamMembership.objects.get(team=team, user=stranger)
    response = admin_client.post(
        url,
        data=_team_form(
            team,
            [
                {"id": mine.pk, "user": owner.pk, "role": "member"},
                {"id": theirs.pk, "user": member.pk, "role": "owner", "DELETE": "on"},
                {"id": newest.pk, "user": stranger.pk, "role": "member"},
            ],
        ),
    )
    assert response.status_code == 200 and "at least one owner" in response.text
    assert TeamMembership.objects.filter(team=team, role=TeamRole.OWNER).count() == 2

    response = admin_client.post(
        url,
        data=_team_form(
            team,
            [
                {"id": mine.pk, "user": owner.pk, "role": "owner"},
                {"id": theirs.pk, "user": member.pk, "role": "owner", "DELETE": "on"},
                {"id": newest.pk, "user": stranger.pk, "role": "member"},
            ],
        ),
    )
    assert response.status_code == 302, response.text[:3000]
    removed = AuditEvent.objects.get(action="team.member_removed")
    assert removed.data["username"] == member.username and removed.actor.username == "root_admin"


def test_memberships_are_read_only_outside_the_team_page_and_teams_are_not_deleted(
    admin_client: Any, team: Any, owner: Any
) -> None:
    membership = TeamMembership.objects.get(team=team, user=owner)
    assert admin_client.get("/admin/accounts/teammembership/add/").status_code == 403
    assert admin_client.get(f"/admin/accounts/teammembership/{membership.pk}/delete/").status_code == 403
    response = admin_client.post(
        f"/admin/accounts/teammembership/{membership.pk}/change/",
        data={"team": str(team.pk), "user": str(owner.pk), "role": "member"},
    )
    assert response.status_code == 403
    assert TeamMembership.objects.get(pk=membership.pk).role == TeamRole.OWNER
    user_page = admin_client.get(f"/admin/accounts/user/{owner.pk}/change/")
    assert user_page.status_code == 200
    assert 'name="team_memberships-0-role"' not in user_page.text
    assert admin_client.get(f"/admin/accounts/team/{team.pk}/delete/").status_code == 403
