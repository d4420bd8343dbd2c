"""`manage.py make_demo`: demo user, demo classifier with its class map, labelled sample videos.

Uses the shared demo cache (tests/demo_cache.py): built once per source version, then reused.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory

from analyses.models import Classifier, Video
from audit.models import AuditEvent
from tests.demo_cache import build_demo, demo_cache_dir
from tests.web.library_factories import media_files, private_media_root, sha256_of  # noqa: F401

DEMO_CACHE = demo_cache_dir()

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True, scope="module")
def _demo_built() -> None:
    build_demo(out_dir=DEMO_CACHE)  # under the shared lock, so concurrent sessions never race


def test_make_demo_registers_model_and_labelled_videos_for_the_demo_user_idempotently(
    private_media_root: Path,
) -> None:
    output = io.StringIO()
    call_command("make_demo", out=str(DEMO_CACHE), stdout=output)
    text = output.getvalue()
    assert "demo-password-3d" in text and "'demo'" in text

    demo_json = json.loads((DEMO_CACHE / "demo.json").read_text())
    user = get_user_model().objects.get(username="demo")
    # The login throttle (django-axes) needs the request a log-in comes with.
    login_request = RequestFactory().post("/accounts/login/")
    assert authenticate(request=login_request, username="demo", password="demo-password-3d") == user

    classifier = Classifier.objects.get(owner=user)
    assert classifier.sha256 == sha256_of(DEMO_CACHE / demo_json["model"])
    assert classifier.num_classes == len(demo_json["class_names"])
    assert classifier.class_labels == demo_json["class_names"]
    assert classifier.conv3d_layers
    assert (private_media_root / classifier.file.name).is_file()

    videos = {video.name: video for video in Video.objects.filter(owner=user)}
    assert len(videos) == len(demo_json["videos"])
    for entry in demo_json["videos"]:
        video = videos[entry["name"]]
        assert video.expected_class == entry["labelled_class"]
        assert video.sha256 == sha256_of(DEMO_CACHE / entry["path"])
        assert (private_media_root / video.rendition.name).is_file()
    assert any(entry["labelled_class"] != entry["true_class"] for entry in demo_json["videos"])

    files_before = media_files(private_media_root)
    events_before = AuditEvent.objects.count()
    call_command("make_demo", out=str(DEMO_CACHE), stdout=io.StringIO())
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert Classifier.objects.count() == 1
    assert Video.objects.count() == len(demo_json["videos"])
    assert media_files(private_media_root) == files_before
    assert AuditEvent.objects.count() == events_before


def test_demo_user_can_log_in_and_see_the_demo_library(web: Any, private_media_root: Path) -> None:
    call_command("make_demo", out=str(DEMO_CACHE), stdout=io.StringIO())
    user = get_user_model().objects.get(username="demo")
    client = web()
    client.login(user=user, password="demo-password-3d")
    page = client.get("/classifiers/").text
    assert Classifier.objects.get(owner=user).name in page
    assert client.get("/videos/").status_code == 200
    assert (
        client.get(f"/videos/{Video.objects.filter(owner=user).first().code}/rendition.mp4").status_code
        == 200
    )
