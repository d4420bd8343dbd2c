"""Who sees and changes what: owner, a member of the object's team, a stranger, anonymous."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import TeamMembership, TeamRole
from analyses.models import Classifier, Video
from tests.web.library_factories import (  # noqa: F401 - fixtures
    code_from_location,
    media_files,
    model_files,
    private_media_root,
    upload_model,
    upload_video,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_objects(
    web: Any, owner: Any, team: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> dict[str, str]:
    """A classifier and a video owned by `owner` and shared with `team`."""
    client = web(owner)
    classifier = code_from_location(
        upload_model(client, model_files["good_h5"], team=str(team.pk)), prefix="/classifiers/"
    )
    video = code_from_location(upload_video(client, video_files["mp4"], team=str(team.pk)), prefix="/videos/")
    return {"classifier": classifier, "video": video}


def _read_urls(codes: dict[str, str]) -> list[str]:
    classifier, video = codes["classifier"], codes["video"]
    return [
        f"/classifiers/{classifier}/",
        f"/classifiers/{classifier}/file/",
        f"/videos/{video}/",
        f"/videos/{video}/original/",
        f"/videos/{video}/rendition.mp4",
        f"/videos/{video}/poster.jpg",
    ]


def _write_requests(codes: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    classifier, video = codes["classifier"], codes["video"]
    return [
        (f"/classifiers/{classifier}/", {"name": "hijacked", "class_map_text": ""}),
        (f"/classifiers/{classifier}/delete/", {}),
        (f"/videos/{video}/", {"name": "hijacked"}),
        (f"/videos/{video}/delete/", {}),
    ]


def test_stranger_gets_404_on_every_page_file_and_write(
    web: Any, stranger: Any, shared_objects: dict[str, str]
) -> None:
    client = web(stranger)
    for url in _read_urls(shared_objects):
        assert client.get(url).status_code == 404, url
    for url, data in _write_requests(shared_objects):
        assert client.post(url, data=data).status_code == 404, url
    for url, code in (("/classifiers/", shared_objects["classifier"]), ("/videos/", shared_objects["video"])):
        listing = client.get(url)
        assert listing.status_code == 200
        assert code not in listing.text
    assert Classifier.objects.get().name != "hijacked" and Video.objects.count() == 1


def test_team_member_sees_everything_but_gets_403_on_edit_and_delete(
    web: Any, member: Any, shared_objects: dict[str, str]
) -> None:
    client = web(member)
    for url in _read_urls(shared_objects):
        assert client.get(url).status_code == 200, url
    assert shared_objects["classifier"] in client.get("/classifiers/").text
    assert shared_objects["video"] in client.get("/videos/").text
    detail = client.get(f"/classifiers/{shared_objects['classifier']}/")
    assert detail.status_code == 200
    assert 'id="classifier-edit-form"' not in detail.text
    for url, data in _write_requests(shared_objects):
        assert client.post(url, data=data).status_code == 403, url
    assert Classifier.objects.get().name != "hijacked"
    assert Video.objects.count() == 1


def test_team_owner_role_may_edit_a_teammates_shared_classifier(
    web: Any, owner: Any, member: Any, team: Any, model_files: dict[str, Path]
) -> None:
    code = code_from_location(
        upload_model(web(member), model_files["other_h5"], team=str(team.pk)), prefix="/classifiers/"
    )
    response = web(owner).post(
        f"/classifiers/{code}/", data={"name": "Curated", "team": str(team.pk), "class_map_text": ""}
    )
    assert response.status_code == 302
    assert Classifier.objects.get(code=code).name == "Curated"


def test_private_upload_is_invisible_to_the_team(
    web: Any, owner: Any, member: Any, team: Any, model_files: dict[str, Path]
) -> None:
    code = code_from_location(upload_model(web(owner), model_files["good_h5"]), prefix="/classifiers/")
    assert web(member).get(f"/classifiers/{code}/").status_code == 404
    assert web(member).get(f"/classifiers/{code}/file/").status_code == 404


def test_member_who_leaves_the_team_loses_access(
    web: Any, member: Any, team: Any, shared_objects: dict[str, str]
) -> None:
    TeamMembership.objects.filter(team=team, user=member).delete()
    client = web(member)
    for url in _read_urls(shared_objects):
        assert client.get(url).status_code == 404, url


def test_uploading_into_a_team_you_are_not_in_is_refused(
    web: Any, stranger: Any, team: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    response = upload_model(web(stranger), model_files["good_h5"], team=str(team.pk))
    assert response.status_code == 400
    assert Classifier.objects.count() == 0
    assert media_files(private_media_root) == []


def test_anonymous_visitor_is_sent_to_log_in_for_pages_and_files(
    web: Any, shared_objects: dict[str, str]
) -> None:
    client = web()
    for url in ["/", "/classifiers/", "/videos/", *_read_urls(shared_objects)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"].startswith("/accounts/login/"), url


def test_malformed_codes_are_404_not_500(web: Any, owner: Any) -> None:
    client = web(owner)
    assert client.get("/classifiers/not-a-uuid/").status_code == 404
    assert client.get("/videos/00000000-0000-0000-0000-000000000000/poster.jpg").status_code == 404


def test_member_role_upgrade_to_owner_grants_writes(
    web: Any, member: Any, team: Any, shared_objects: dict[str, str]
) -> None:
    TeamMembership.objects.filter(team=team, user=member).update(role=TeamRole.OWNER)
    response = web(member).post(
        f"/videos/{shared_objects['video']}/", data={"name": "Edited", "team": str(team.pk)}
    )
    assert response.status_code == 302
    assert Video.objects.get().name == "Edited"


def test_admin_lists_library_objects_and_keeps_the_audit_trail_read_only(
    web: Any, owner: Any, shared_objects: dict[str, str]
) -> None:
    from django.contrib.auth import get_user_model

    from tests.conftest import PASSWORD

    admin_user = get_user_model().objects.create_superuser(
        username="root_admin", email="root@example.org", password=PASSWORD
    )
    client = web(admin_user)
    classifiers = client.get("/admin/analyses/classifier/?q=tiny")
    assert classifiers.status_code == 200 and "clip" not in classifiers.text
    assert "tiny_c3d" in classifiers.text
    assert client.get("/admin/analyses/video/?codec__exact=h264").status_code == 200
    assert client.get("/admin/analyses/analysis/?status__exact=queued").status_code == 200
    audit = client.get("/admin/audit/auditevent/?q=classifier.created")
    assert audit.status_code == 200 and "classifier.created" in audit.text
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    assert client.get("/admin/analyses/classifier/add/").status_code == 403


def test_home_page_leads_a_logged_in_user_to_the_analyses_list(web: Any, owner: Any) -> None:
    client = web(owner)
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/analyses/"
    page = client.get("/analyses/")
    assert page.status_code == 200
    assert 'href="/classifiers/"' in page.text and 'href="/videos/"' in page.text


def test_editing_after_the_owner_left_the_team_keeps_the_object_shared(
    web: Any, owner: Any, member: Any, team: Any, shared_objects: dict[str, str]
) -> None:
    import html

    # The owner hands the team over and leaves it; their shared objects stay shared.
    TeamMembership.objects.filter(team=team, user=member).update(role=TeamRole.OWNER)
    TeamMembership.objects.filter(team=team, user=owner).delete()
    client = web(owner)
    classifier, video = shared_objects["classifier"], shared_objects["video"]
    for page_url, data in (
        (f"/classifiers/{classifier}/", {"name": "Renamed model", "class_map_text": ""}),
        (f"/videos/{video}/", {"name": "Renamed video"}),
    ):
        page = html.unescape(client.get(page_url).text)
        # The edit form still offers (and has selected) the current team...
        assert f'<option value="{team.pk}" selected>Vision Lab (you are no longer a member)</option>' in page
        # ...so saving another change, as the browser submits it, does not unshare.
        response = client.post(page_url, data={**data, "team": str(team.pk)})
        assert response.status_code == 302, response.text[:2000]
    assert Classifier.objects.get().team == team and Classifier.objects.get().name == "Renamed model"
    assert Video.objects.get().team == team and Video.objects.get().name == "Renamed video"
    assert web(member).get(f"/videos/{video}/").status_code == 200


def test_an_analysis_created_while_deleting_archives_instead_of_failing(
    web: Any, owner: Any, shared_objects: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db.models.query import QuerySet

    from analyses.models import Analysis
    from audit.models import AuditEvent

    classifier = Classifier.objects.get(code=shared_objects["classifier"])
    video = Video.objects.get(code=shared_objects["video"])
    original_exists = QuerySet.exists

    def exists_then_someone_creates_an_analysis(self: QuerySet) -> bool:
        # The delete checked "no analyses"; another request creates one right after.
        answer = original_exists(self)
        if self.model is Analysis and not original_exists(Analysis.objects.all()):
            Analysis.objects.create(owner=owner, classifier=classifier, video=video)
        return answer

    monkeypatch.setattr(QuerySet, "exists", exists_then_someone_creates_an_analysis)
    client = web(owner)
    for kind, url in (
        ("classifier", f"/classifiers/{classifier.code}/delete/"),
        ("video", f"/videos/{video.code}/delete/"),
    ):
        response = client.post(url)
        assert response.status_code == 302, response.text[:2000]
        assert AuditEvent.objects.filter(action=f"{kind}.archived").count() == 1
        assert not AuditEvent.objects.filter(action=f"{kind}.deleted").exists()
        Analysis.objects.all().delete()
    classifier.refresh_from_db()
    video.refresh_from_db()
    assert classifier.archived_at is not None and video.archived_at is not None
    assert Path(classifier.file.path).is_file() and Path(video.rendition.path).is_file()
