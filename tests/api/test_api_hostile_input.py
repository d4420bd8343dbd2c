"""Hostile input through the API meets the same refusals as through the pages, with a personal
API token as a script would send it: a model whose Lambda layer would run code is refused by the
worker without the code running; a user's file name never becomes a path; bodies and numbers are
bounded; nothing is stored for what is refused before a worker sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from analyses.models import Analysis, Classifier, Video
from tests.jobs import run_queued_tasks
from tests.web.library_factories import (  # noqa: F401 - fixtures
    media_files,
    model_files,
    private_media_root,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(live_server: Any, owner: Any) -> Any:
    from accounts.tokens import api_token_create

    _token, secret = api_token_create(user=owner, name="hostile", expires_in_days=1)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"
    session.base = f"{live_server.url}/api/v1"  # type: ignore[attr-defined]
    return session


def test_a_model_with_a_lambda_layer_is_refused_by_the_worker_and_its_code_never_runs(
    api: Any, model_files: dict[str, Path]
) -> None:
    marker = model_files["lambda_marker"]
    assert not marker.exists()
    with model_files["lambda"].open("rb") as handle:
        response = api.post(f"{api.base}/classifiers/", files={"file": ("model.h5", handle)}, timeout=60)
    assert response.status_code == 202 and response.json()["status"] == "processing"
    run_queued_tasks()
    detail = api.get(f"{api.base}/classifiers/{response.json()['code']}/", timeout=30)
    assert detail.status_code == 200
    assert detail.json()["status"] == "failed" and "lambda" in detail.json()["status_message"].lower()
    assert not marker.exists(), "the Lambda's code was executed while inspecting the upload"


def test_a_user_file_name_never_becomes_a_path(
    api: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    hostile = "../../../../tmp/evil\x00name/../x.h5"
    with model_files["good_h5"].open("rb") as handle:
        response = api.post(f"{api.base}/classifiers/", files={"file": (hostile, handle)}, timeout=60)
    assert response.status_code == 202, response.text
    classifier = Classifier.objects.get(code=response.json()["code"])
    stored = Path(classifier.file.name)
    assert stored.parent == Path("classifiers") and ".." not in stored.parts
    assert (private_media_root / stored).resolve().is_relative_to(private_media_root.resolve())
    assert not Path("/tmp/evil").exists()


def test_refusals_before_any_worker_store_nothing_and_answer_in_the_one_shape(
    api: Any, owner: Any, video_files: dict[str, Path]
) -> None:
    cases = [
        # a body that is not a file upload where one is needed
        ("post", "/classifiers/", {"data": {"name": "no file"}}, 400),
        # a JSON body over the request-wide limit, refused before it is read
        ("post", "/analyses/", {"data": b"{" + b" " * (5 * 1024 * 1024) + b"}"}, 413),
        # numbers far out of range, and a page number of thousands of digits
        ("post", "/analyses/", {"json": {"classifier": "x", "video": "y", "top_k": 10**30}}, 400),
        ("get", "/analyses/?page=" + "9" * 5000, {}, 404),
        ("get", "/analyses/?page_size=" + "9" * 50, {}, 200),
        ("post", "/share-links/", {"json": {"target_type": "analysis", "target": "x", "days": 10**9}}, 400),
        ("post", "/comparisons/", {"json": {"title": "t" * 100_000, "columns": ["a"] * 10_000}}, 400),
    ]
    for method, path, kwargs, status in cases:
        response = getattr(api, method)(f"{api.base}{path}", timeout=60, **kwargs)
        assert response.status_code == status, (path, response.status_code, response.text[:300])
        if status >= 400:
            assert response.json()["error"]["status"] == status, path
    assert not Classifier.objects.exists() and not Video.objects.exists() and not Analysis.objects.exists()
    listed = api.get(f"{api.base}/analyses/?page_size=" + "9" * 50, timeout=30)
    assert listed.status_code == 200 and listed.json()["count"] == 0
