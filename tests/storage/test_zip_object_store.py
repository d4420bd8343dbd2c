"""The results ZIP when the web must not stream it (MEDIA_DELIVERY presigned or accel): the
worker prebuilds it into the attempt's folder and every ZIP address (the page's, the share
link's, the API's) hands it to the object store or to nginx. One machine (django) streams it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from analyses import storage
from analyses.runs.archive import ARCHIVE_NAME, listed_result_names
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures
from tests.storage.runs_helpers import analysis_queue, published_library, run_as_worker, sha256
from tests.worker.conftest import demo, demo_video_entry, make_classifier, make_video  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def library(owner: Any, demo: dict[str, Any], media_bucket: str, settings: Any) -> dict[str, Any]:
    return published_library(owner=owner, demo=demo, settings=settings)


@pytest.fixture
def succeeded(owner: Any, library: dict[str, Any], settings: Any, tmp_path: Path) -> Any:
    """An analysis run by a worker machine (its own MEDIA_ROOT) and published to the bucket."""
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    return analysis


def _assert_complete_zip(data: bytes, analysis: Any) -> None:
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    assert archive.namelist() == listed_result_names(analysis.manifest)
    assert json.loads(archive.read("manifest.json")) == analysis.manifest
    for record in analysis.manifest["files"]:
        assert sha256(archive.read(record["path"])) == record["sha256"], record["path"]


def test_the_zip_is_a_presigned_redirect_to_a_complete_prebuilt_zip_matching_the_manifest(
    web: Any, owner: Any, stranger: Any, succeeded: Any, media_bucket: str, object_store: ObjectStore
) -> None:
    from audit.models import AuditEvent

    url = f"/analyses/{succeeded.code}/download.zip"
    assert web(stranger).get(url).status_code == 404
    redirect = web(owner).get(url)
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith(f"{object_store.endpoint_url}/{media_bucket}/")
    download = requests.get(redirect.headers["Location"], timeout=30)
    assert download.status_code == 200 and download.headers["Content-Type"] == "application/zip"
    name = f"analysis-{succeeded.code.hex[:8]}.zip"
    assert download.headers["Content-Disposition"] == f'attachment; filename="{name}"'
    _assert_complete_zip(download.content, succeeded)
    event = AuditEvent.objects.get(action="analysis.zip_downloaded")
    assert event.actor_username == owner.username and event.data["file"] == name
    # The prebuilt ZIP counts in the owner's storage, and is not one of the listed result files.
    keys = object_store.client().list_objects_v2(Bucket=media_bucket, Prefix=succeeded.results_dir + "/")
    assert succeeded.results_bytes == sum(item["Size"] for item in keys["Contents"])
    assert ARCHIVE_NAME not in [record["path"] for record in succeeded.manifest["files"]]


def test_the_share_link_and_the_api_zip_redirect_to_the_prebuilt_zip(
    web: Any, owner: Any, succeeded: Any, live_server: Any
) -> None:
    from accounts.tokens import api_token_create
    from analyses.sharing.services import share_link_create

    prebuilt = f"{succeeded.results_dir}/{ARCHIVE_NAME}"
    _, token = share_link_create(actor=owner, target=succeeded)
    shared = web().get(f"/s/{token}/download.zip")
    assert shared.status_code == 302 and prebuilt in shared.headers["Location"]
    assert shared.headers["Referrer-Policy"] == "no-referrer"
    _, secret = api_token_create(user=owner, name="zip", expires_in_days=1)
    api = requests.get(
        f"{live_server.url}/api/v1/analyses/{succeeded.code}/download.zip",
        headers={"Authorization": f"Bearer {secret}"},
        allow_redirects=False,
        timeout=30,
    )
    assert api.status_code == 302 and prebuilt in api.headers["Location"]
    _assert_complete_zip(requests.get(api.headers["Location"], timeout=30).content, succeeded)


def test_an_analysis_published_without_a_prebuilt_zip_is_streamed_from_the_store(
    web: Any, owner: Any, succeeded: Any
) -> None:
    storage.media_delete(names=[f"{succeeded.results_dir}/{ARCHIVE_NAME}"])
    response = web(owner).get(f"/analyses/{succeeded.code}/download.zip")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/zip"
    _assert_complete_zip(response.content, succeeded)


def test_with_accel_delivery_the_zip_answers_x_accel_redirect_and_no_body(
    web: Any, owner: Any, library: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_DELIVERY = "accel"
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, tmp_path / "worker-machine")
    analysis.refresh_from_db()
    response = web(owner).get(f"/analyses/{analysis.code}/download.zip")
    assert response.status_code == 200
    target = response.headers["X-Accel-Redirect"]
    assert target.startswith(f"/_protected/s3/{settings.MEDIA_BUCKET}/{analysis.results_dir}/{ARCHIVE_NAME}?")
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.content == b""


def _run_on_one_machine(*, owner: Any, demo: dict[str, Any], settings: Any, media_root: Path) -> Any:
    """An analysis run with no bucket: MEDIA_ROOT is the store, shared by the web and the worker."""
    settings.MEDIA_ROOT = str(media_root)
    entry = demo_video_entry(demo, mislabelled=False)
    library = {
        "classifier": make_classifier(
            owner=owner,
            model_path=Path(demo["model_path"]),
            inspection=demo["inspection"],
            media_root=media_root,
        ),
        "video": make_video(owner=owner, video_path=Path(entry["path"]), media_root=media_root),
        "entry": entry,
    }
    analysis = analysis_queue(owner=owner, library=library)
    run_as_worker(settings, media_root)  # the same machine: the same MEDIA_ROOT
    analysis.refresh_from_db()
    assert analysis.status == "succeeded", analysis.error_message
    return analysis


def test_on_one_machine_no_zip_is_prebuilt_and_the_zip_is_streamed(
    web: Any, owner: Any, demo: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    assert settings.MEDIA_DELIVERY == "django" and not settings.MEDIA_BUCKET
    media_root = tmp_path / "media"
    analysis = _run_on_one_machine(owner=owner, demo=demo, settings=settings, media_root=media_root)
    assert not (media_root / analysis.results_dir / ARCHIVE_NAME).exists()
    response = web(owner).get(f"/analyses/{analysis.code}/download.zip")
    assert response.status_code == 200 and "Content-Length" not in response.headers  # streamed
    _assert_complete_zip(response.content, analysis)


def test_on_one_machine_with_accel_the_prebuilt_zip_is_handed_to_nginx(
    web: Any, owner: Any, demo: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_DELIVERY = "accel"
    media_root = tmp_path / "media"
    analysis = _run_on_one_machine(owner=owner, demo=demo, settings=settings, media_root=media_root)
    _assert_complete_zip((media_root / analysis.results_dir / ARCHIVE_NAME).read_bytes(), analysis)
    response = web(owner).get(f"/analyses/{analysis.code}/download.zip")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["X-Accel-Redirect"] == f"/_protected/media/{analysis.results_dir}/{ARCHIVE_NAME}"


def test_a_zip_symlink_left_in_an_older_results_folder_is_never_handed_to_nginx(
    web: Any, owner: Any, demo: dict[str, Any], settings: Any, tmp_path: Path
) -> None:
    media_root = tmp_path / "media"
    analysis = _run_on_one_machine(owner=owner, demo=demo, settings=settings, media_root=media_root)
    secret = tmp_path / "secret.zip"
    secret.write_bytes(b"not a result")
    (media_root / analysis.results_dir / ARCHIVE_NAME).symlink_to(secret)  # as a hostile engine could
    settings.MEDIA_DELIVERY = "accel"
    response = web(owner).get(f"/analyses/{analysis.code}/download.zip")
    assert response.status_code == 200 and "X-Accel-Redirect" not in response.headers
    _assert_complete_zip(response.content, analysis)  # streamed from the listed files instead
