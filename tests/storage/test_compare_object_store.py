"""A comparison's difference row with the media store in a bucket: the worker reads both raw
maps from the store and uploads the difference before the row says ready; deleting an
analysis removes its differences' objects too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from analyses import storage
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.storage.runs_helpers import analysis_queue, published_library, run_as_worker
from tests.worker.conftest import demo  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def two_layers(owner: Any, demo: dict[str, Any], media_bucket: str, settings: Any, tmp_path: Path) -> Any:
    """An analysis of two layers, run by one worker machine and published to the bucket."""
    library = published_library(owner=owner, demo=demo, settings=settings)
    analysis = analysis_queue(owner=owner, library=library, layers=2)
    run_as_worker(settings, tmp_path / "first-worker")
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    return analysis


def test_a_difference_built_on_another_worker_machine_is_uploaded_before_it_is_ready(
    web: Any,
    owner: Any,
    stranger: Any,
    two_layers: Any,
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    from analyses.models import ComparisonDifference

    pair = {"a": f"{two_layers.code}:0", "b": f"{two_layers.code}:1"}
    requested = web(owner).post("/compare/differences/", data=pair)
    assert requested.status_code == 202, requested.text
    second = tmp_path / "second-worker"  # has no copy of the analysis's maps: they come from the bucket
    assert run_as_worker(settings, second) == ["ready"]
    difference = ComparisonDifference.objects.get()
    keys = object_store.keys(media_bucket, f"{difference.results_dir}/")
    assert f"{difference.results_dir}/{difference.result['legend']}" in keys
    assert {f"{difference.results_dir}/{name}" for name in difference.result["frames"]} <= set(keys)
    assert not (second / difference.results_dir).exists()  # dropped once published
    url = f"/compare/differences/{difference.code}/files/{difference.result['legend']}"
    assert web(stranger).get(url).status_code == 404
    redirect = web(owner).get(url)
    assert redirect.status_code == 302
    image = requests.get(redirect.headers["Location"], timeout=30)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_deleting_an_analysis_removes_the_objects_of_its_differences(
    web: Any,
    owner: Any,
    two_layers: Any,
    media_bucket: str,
    object_store: ObjectStore,
    settings: Any,
    tmp_path: Path,
) -> None:
    from analyses.models import ComparisonDifference

    pair = {"a": f"{two_layers.code}:0", "b": f"{two_layers.code}:1"}
    assert web(owner).post("/compare/differences/", data=pair).status_code == 202
    assert run_as_worker(settings, tmp_path / "second-worker") == ["ready"]
    prefix = f"{ComparisonDifference.objects.get().results_dir}/"
    assert object_store.keys(media_bucket, prefix)
    assert web(owner).post(f"/analyses/{two_layers.code}/delete/").status_code == 302
    deadline = time.monotonic() + 10
    while object_store.keys(media_bucket, prefix) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert object_store.keys(media_bucket, prefix) == []
    assert object_store.keys(media_bucket, f"analyses/{two_layers.code.hex}/") == []
    assert not storage.media_local_path(prefix.rstrip("/")).exists()
