"""Per-user quotas: storage for uploads and results, analyses queued or running at once; the
site defaults come from settings, a user's own limits from their `UserQuota` (admin-editable)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from accounts.models import UserQuota
from analyses.models import Analysis, Classifier, Video
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


def _file_error(response: Any) -> str:
    assert 'data-testid="error-file"' in response.text, response.text[:3000]
    return html.unescape(response.text.split('data-testid="error-file"', 1)[1].split("</ul>", 1)[0])


def test_an_upload_past_the_storage_quota_is_refused_while_it_streams_and_stores_nothing(
    web: Any, owner: Any, model_files: dict[str, Path], video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    upload_model(client, model_files["good_h5"])
    used = Classifier.objects.get().size_bytes
    # Room for less than the video: the upload is refused, in words, and nothing is kept.
    UserQuota.objects.create(user=owner, storage_mb=1)
    Classifier.objects.update(size_bytes=1024 * 1024 - 1000)
    response = upload_video(client, video_files["avi"])
    assert response.status_code == 400
    message = _file_error(response)
    assert "storage quota" in message and "left" in message, message
    assert Video.objects.count() == 0
    assert len(media_files(private_media_root)) == 1  # the model only
    # The page shows how much is used.
    page = client.get("/videos/")
    assert page.status_code == 200 and "Your storage:" in page.text and "1.0\xa0MB" in page.text
    assert used > 0


def test_a_full_storage_quota_refuses_before_reading_the_upload(
    web: Any, owner: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    upload_model(client, model_files["good_h5"])
    UserQuota.objects.create(user=owner, storage_mb=1)
    Classifier.objects.update(size_bytes=2 * 1024 * 1024)
    response = upload_model(client, model_files["other_h5"])
    assert response.status_code == 400
    assert "storage quota is full" in _file_error(response)
    assert Classifier.objects.count() == 1


def test_a_users_own_quota_overrides_the_site_default(
    web: Any, owner: Any, settings: Any, model_files: dict[str, Path]
) -> None:
    from analyses.quota import storage_limit_bytes

    settings.GRADCAM_QUOTA_STORAGE_MB = 1
    assert storage_limit_bytes(user=owner) == 1024 * 1024
    UserQuota.objects.create(user=owner, storage_mb=50)
    assert storage_limit_bytes(user=owner) == 50 * 1024 * 1024
    assert upload_model(web(owner), model_files["good_h5"]).status_code == 302


def test_refused_uploads_and_other_users_do_not_count_against_the_quota(
    web: Any, owner: Any, member: Any, model_files: dict[str, Path]
) -> None:
    from analyses.quota import storage_used_bytes

    upload_model(web(owner), model_files["not_keras"])  # refused by inspection: nothing kept
    assert Classifier.objects.get().status == "failed"
    assert storage_used_bytes(user=owner) == 0
    upload_model(web(member), model_files["good_h5"])
    assert storage_used_bytes(user=owner) == 0
    assert storage_used_bytes(user=member) == Classifier.objects.get(owner=member).size_bytes


def test_analyses_queued_at_once_are_limited_with_a_clear_message(
    web: Any, owner: Any, settings: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> None:
    settings.GRADCAM_QUOTA_ACTIVE_ANALYSES = 2
    client = web(owner)
    classifier = code_from_location(upload_model(client, model_files["good_h5"]), prefix="/classifiers/")
    video = code_from_location(upload_video(client, video_files["avi"]), prefix="/videos/")
    fields = {
        "classifier": classifier,
        "video": video,
        "method": "gradcam",
        "pooling": "global",
        "bbox_mode": "otsu",
        "bbox_threshold": "0.5",
        "colormap": "jet",
        "alpha": "0.3",
        "frame_stride": "1",
        "frame_offset": "0",
        "resize_mode": "stretch",
        "scaling": "auto",
    }
    for _ in range(2):
        assert client.post("/analyses/new/", data=fields).status_code == 302
    refused = client.post("/analyses/new/", data=fields)
    assert refused.status_code == 400
    assert "2 analyses queued or running" in html.unescape(refused.text)
    assert Analysis.objects.count() == 2
    # A finished one frees its place; so does a higher limit set for this user.
    Analysis.objects.filter(pk=Analysis.objects.first().pk).update(status="succeeded")
    assert client.post("/analyses/new/", data=fields).status_code == 302
    UserQuota.objects.create(user=owner, active_analyses=10)
    assert client.post("/analyses/new/", data=fields).status_code == 302
    assert Analysis.objects.count() == 4


def test_results_count_in_storage(
    owner: Any, model_files: dict[str, Path], web: Any, video_files: dict[str, Path]
) -> None:
    from analyses.quota import storage_used_bytes

    client = web(owner)
    upload_model(client, model_files["good_h5"])
    upload_video(client, video_files["avi"])
    before = storage_used_bytes(user=owner)
    video = Video.objects.get()
    assert before == Classifier.objects.get().size_bytes + video.size_bytes + video.derived_bytes
    Analysis.objects.create(
        owner=owner, classifier=Classifier.objects.get(), video=video, results_bytes=12345
    )
    assert storage_used_bytes(user=owner) == before + 12345


def test_staff_set_a_users_limits_in_the_admin_and_it_is_audited(web: Any, owner: Any) -> None:
    from django.contrib.auth import get_user_model

    from analyses.quota import active_analyses_limit, storage_limit_bytes
    from audit.models import AuditEvent
    from tests.conftest import PASSWORD

    staff = get_user_model().objects.create_superuser(
        username="root_admin", email="r@example.org", password=PASSWORD
    )
    client = web(staff)
    url = f"/admin/accounts/user/{owner.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and 'name="quota-0-storage_mb"' in page.text
    import re

    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    data = {
        **form,
        "username": owner.username,
        "email": owner.email,
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "quota-TOTAL_FORMS": "1",
        "quota-INITIAL_FORMS": "0",
        "quota-0-storage_mb": "321",
        "quota-0-active_analyses": "3",
        "quota-0-user": str(owner.pk),
        "team_memberships-TOTAL_FORMS": "0",
        "team_memberships-INITIAL_FORMS": "0",
    }
    response = client.post(url, data=data)
    assert response.status_code == 302, response.text[:3000]
    assert storage_limit_bytes(user=owner) == 321 * 1024 * 1024 and active_analyses_limit(user=owner) == 3
    event = AuditEvent.objects.get(action="user.quota_changed")
    assert event.data["storage_mb"] == 321 and event.actor_username == "root_admin"
