"""The media store against a real S3-compatible server (moto's, over HTTP): what a worker on
another machine and a web server behind nginx rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from analyses import storage
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def _write(name: str, data: bytes) -> Path:
    path = storage.media_local_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_published_file_is_fetched_by_another_machine_from_the_bucket(
    media_bucket: str, object_store: ObjectStore, settings: Any, tmp_path: Path
) -> None:
    _write("videos/1/clip.mp4", b"frames" * 1000)
    storage.media_publish_file(name="videos/1/clip.mp4")
    assert object_store.keys(media_bucket) == ["videos/1/clip.mp4"]
    settings.MEDIA_ROOT = str(tmp_path / "other-machine")  # nothing local there
    fetched = storage.media_fetch(name="videos/1/clip.mp4", size=6000)
    assert fetched.read_bytes() == b"frames" * 1000
    assert fetched.is_relative_to(tmp_path / "other-machine")
    assert not [p for p in fetched.parent.iterdir() if p.name.endswith(".part")]


def test_a_cached_copy_of_the_wrong_size_is_downloaded_again(media_bucket: str) -> None:
    _write("classifiers/1/model.h5", b"complete model")
    storage.media_publish_file(name="classifiers/1/model.h5")
    storage.media_local_path("classifiers/1/model.h5").write_bytes(b"half")
    assert storage.media_fetch(name="classifiers/1/model.h5", size=14).read_bytes() == b"complete model"


def test_fetching_what_was_never_stored_says_missing(media_bucket: str) -> None:
    with pytest.raises(storage.MediaMissing):
        storage.media_fetch(name="videos/9/none.mp4")
    with pytest.raises(storage.MediaMissing):
        storage.media_size(name="videos/9/none.mp4")
    assert storage.media_exists(name="videos/9/none.mp4") is False


def test_a_results_tree_is_uploaded_without_its_symlinks_and_deleted_as_a_whole(
    media_bucket: str, object_store: ObjectStore, tmp_path: Path
) -> None:
    _write("analyses/ab/attempt-1/manifest.json", b"{}")
    _write("analyses/ab/attempt-1/layers/00/heatmap.mp4", b"mp4")
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    storage.media_local_path("analyses/ab/attempt-1/link.txt").symlink_to(outside)
    names = storage.media_publish_tree(prefix="analyses/ab/attempt-1")
    assert names == ["analyses/ab/attempt-1/layers/00/heatmap.mp4", "analyses/ab/attempt-1/manifest.json"]
    assert object_store.keys(media_bucket) == names
    storage.media_delete_prefix(prefix="analyses/ab")
    assert object_store.keys(media_bucket) == []
    assert not storage.media_local_path("analyses/ab").exists()


def test_a_presigned_address_serves_the_bytes_and_range_then_expires_for_other_keys(
    media_bucket: str,
) -> None:
    _write("analyses/cd/attempt-1/heatmap.mp4", bytes(range(256)) * 4)
    storage.media_publish_file(name="analyses/cd/attempt-1/heatmap.mp4")
    response = storage.media_delivery_response(
        name="analyses/cd/attempt-1/heatmap.mp4", content_type="video/mp4", download_name=None
    )
    assert response is not None and response.status_code == 302
    assert response["Cache-Control"] == "private, no-store"
    address = response["Location"]
    whole = requests.get(address, timeout=30)
    assert whole.status_code == 200
    assert whole.headers["Content-Type"] == "video/mp4"
    assert whole.content == bytes(range(256)) * 4
    part = requests.get(address, headers={"Range": "bytes=10-19"}, timeout=30)
    assert part.status_code == 206 and part.content == bytes(range(10, 20))
    tampered = address.replace("heatmap.mp4", "manifest.json")
    assert requests.get(tampered, timeout=30).status_code == 403


def test_accel_delivery_names_an_internal_location_and_never_the_bytes(
    media_bucket: str, settings: Any
) -> None:
    settings.MEDIA_DELIVERY = "accel"
    response = storage.media_delivery_response(
        name="analyses/ef/attempt-1/all.zip", content_type="application/zip", download_name="x.zip"
    )
    assert response is not None and response.status_code == 200
    assert response["X-Accel-Redirect"].startswith(
        "/_protected/s3/" + media_bucket + "/analyses/ef/attempt-1/all.zip?"
    )
    assert "X-Amz-Signature=" in response["X-Accel-Redirect"]
    assert response["Content-Disposition"].startswith("attachment")
    assert response.content == b""


def test_accel_delivery_from_the_local_disk(settings: Any) -> None:
    settings.MEDIA_DELIVERY = "accel"
    response = storage.media_delivery_response(name="videos/1/a b.mp4", content_type="video/mp4")
    assert response is not None
    assert response["X-Accel-Redirect"] == "/_protected/media/videos/1/a%20b.mp4"
    assert response["Content-Disposition"] == "inline"


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", "a/./b"])
def test_names_that_could_leave_the_store_are_refused(name: str) -> None:
    with pytest.raises(storage.MediaMissing):
        storage.media_local_path(name)


def test_the_cache_is_trimmed_oldest_first_and_work_folders_are_left_alone(media_bucket: str) -> None:
    import os

    for index in range(5):
        path = _write(f"videos/{index}/clip.mp4", b"x" * 1000)
        os.utime(path, (1000 + index, 1000 + index))
    _write("analyses/.work/job/input.bin", b"y" * 5000)
    removed = storage.media_cache_trim(max_bytes=2500, skip=["analyses/.work"])
    assert removed == 3
    assert [i for i in range(5) if storage.media_local_path(f"videos/{i}/clip.mp4").exists()] == [3, 4]
    assert storage.media_local_path("analyses/.work/job/input.bin").exists()
