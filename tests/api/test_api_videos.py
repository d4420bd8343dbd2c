"""The videos API over real HTTP: upload (202, then probed and transcoded by the worker), list,
detail with the probe data, edit, delete, and the original / browser copy / poster files, for
every persona; uploads refused with the page's words and nothing stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analyses.models import Video
from audit.models import AuditEvent
from tests.api.api_helpers import assert_anonymous_refused, send_json, throttle_rate
from tests.api.test_api_foundation import assert_error_shape
from tests.jobs import run_queued_tasks
from tests.web.library_factories import (  # noqa: F401 - fixtures
    media_files,
    private_media_root,
    sha256_of,
    upload_spy,
    video_files,
)

pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/v1/videos/"


def api_upload(client: Any, path: Path, **fields: Any) -> Any:
    with path.open("rb") as handle:
        return client.post(
            API,
            data={"name": fields.pop("name", path.stem), **fields},
            files={"file": (path.name, handle, "application/octet-stream")},
        )


def _uploaded(client: Any, path: Path, **fields: Any) -> dict[str, Any]:
    response = api_upload(client, path, **fields)
    assert response.status_code == 202, response.text[:2000]
    run_queued_tasks()
    return dict(response.json())


# --------------------------------------------------------------------------- upload
def test_upload_answers_202_processing_then_the_detail_has_probe_data_and_file_urls(
    web: Any, owner: Any, team: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    response = api_upload(client, video_files["avi"], name="Pattern", team=str(team.code), expected_class="2")
    assert response.status_code == 202, response.text[:2000]
    queued = response.json()
    assert (queued["status"], queued["rendition_url"], queued["poster_url"]) == ("processing", None, None)
    assert (queued["name"], queued["expected_class"], queued["team"]["code"]) == (
        "Pattern",
        2,
        str(team.code),
    )
    run_queued_tasks()
    detail = client.get(f"{API}{queued['code']}/")
    assert detail.status_code == 200
    video = detail.json()
    assert video["status"] == "ready" and video["can_write"] is True
    assert (video["container"], video["width"], video["height"], video["frame_count"]) == ("avi", 96, 64, 20)
    assert video["fps"] == pytest.approx(10) and video["duration_seconds"] == pytest.approx(2, abs=0.2)
    assert video["has_audio"] is False and video["codec"]
    assert video["sha256"] == sha256_of(video_files["avi"]) and video["owner"]["username"] == owner.username
    rendition = client.get(video["rendition_url"])
    assert rendition.status_code == 200 and rendition.headers["Content-Type"] == "video/mp4"
    assert rendition.content[4:8] == b"ftyp"
    partial = client.get(video["rendition_url"], headers={"Range": "bytes=10-109"})
    assert partial.status_code == 206 and partial.content == rendition.content[10:110]
    poster = client.get(video["poster_url"], headers={"Accept": "image/jpeg"})
    assert poster.status_code == 200 and poster.headers["Content-Type"] == "image/jpeg"
    original = client.get(video["original_url"], headers={"Accept": "application/octet-stream"})
    assert original.status_code == 200 and original.content == video_files["avi"].read_bytes()
    assert AuditEvent.objects.filter(action="video.downloaded", actor=owner).count() == 1


def test_list_shows_each_user_what_the_video_pages_show(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any, video_files: dict[str, Path]
) -> None:
    shared = _uploaded(web(owner), video_files["avi"], team=str(team.code))
    private = _uploaded(web(owner), video_files["mp4"])
    for user, expected in (
        (owner, {shared["code"], private["code"]}),
        (member, {shared["code"]}),
        (stranger, set()),
    ):
        response = web(user).get(API)
        assert response.status_code == 200
        body = response.json()
        assert {row["code"] for row in body["results"]} == expected and body["count"] == len(expected)
    assert web(owner).get(API, params={"status": "processing"}).json()["count"] == 0
    assert web(owner).get(API, params={"page_size": 1}).json()["next"]
    assert_anonymous_refused(web().get(API))


# --------------------------------------------------------------------------- permissions
def test_member_reads_and_downloads_but_may_not_edit_or_delete_stranger_gets_404(
    web: Any, owner: Any, member: Any, stranger: Any, team: Any, video_files: dict[str, Path]
) -> None:
    code = _uploaded(web(owner), video_files["mp4"], team=str(team.code))["code"]
    urls = [f"{API}{code}/{tail}" for tail in ("", "original/", "rendition.mp4", "poster.jpg")]
    member_client, stranger_client, anonymous = web(member), web(stranger), web()
    for url in urls:
        assert member_client.get(url).status_code == 200, url
        assert_error_shape(stranger_client.get(url), 404)
        assert_anonymous_refused(anonymous.get(url))
    detail = member_client.get(urls[0]).json()
    assert detail["can_write"] is False and detail["original_url"]
    for client, status in ((member_client, 403), (stranger_client, 404)):
        assert_error_shape(send_json(client, "PATCH", urls[0], {"name": "Mine now"}), status)
        assert_error_shape(send_json(client, "DELETE", urls[0]), status)
    assert_anonymous_refused(send_json(anonymous, "PATCH", urls[0], {"name": "Mine now"}))
    assert_anonymous_refused(send_json(anonymous, "DELETE", urls[0]))
    video = Video.objects.get()
    assert video.name == "clip" and video.archived_at is None


def test_owner_edits_name_expected_class_and_team_then_deletes_with_the_files(
    web: Any, owner: Any, member: Any, team: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    code = _uploaded(client, video_files["mp4"])["code"]
    url = f"{API}{code}/"
    response = send_json(
        client, "PATCH", url, {"name": "Renamed", "expected_class": 4, "team": str(team.code)}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["expected_class"]) == ("Renamed", 4)
    assert web(member).get(f"{API}{code}/").status_code == 200  # now shared with the team
    cleared = send_json(client, "PATCH", url, {"expected_class": None})
    assert cleared.status_code == 200 and cleared.json()["expected_class"] is None
    assert cleared.json()["name"] == "Renamed"  # fields not sent are kept
    bad = send_json(client, "PATCH", url, {"name": ""})
    assert assert_error_shape(bad, 400)["fields"]["name"] == ["This field may not be blank."]
    assert len(media_files(private_media_root)) == 3
    deleted = send_json(client, "DELETE", url)
    assert deleted.status_code == 200 and deleted.json()["message"] == "Deleted."
    assert Video.objects.count() == 0 and media_files(private_media_root) == []
    assert_error_shape(client.get(url), 404)


# --------------------------------------------------------------------------- refusals
def test_refusals_use_the_pages_words_and_store_nothing(
    web: Any, owner: Any, stranger: Any, team: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    error = assert_error_shape(api_upload(client, video_files["empty"]), 400)
    assert error["fields"]["file"] == ["The submitted file is empty."]
    error = assert_error_shape(api_upload(client, video_files["mp4"], expected_class="-1"), 400)
    assert error["fields"]["expected_class"] == ["Ensure this value is greater than or equal to 0."]
    error = assert_error_shape(api_upload(client, video_files["mp4"], expected_class="9999999"), 400)
    assert "must be a class index from 0 to" in error["fields"]["expected_class"][0]
    error = assert_error_shape(api_upload(web(stranger), video_files["mp4"], team=str(team.code)), 400)
    assert error["fields"]["team"] == ["You can choose only a team you belong to."]
    missing = client.post(API, data={"name": "no file"})
    assert assert_error_shape(missing, 400)["fields"]["file"] == ["This field is required."]
    assert Video.objects.count() == 0 and media_files(private_media_root) == []
    assert not AuditEvent.objects.filter(action="video.created").exists()


def test_a_file_that_is_not_a_video_is_accepted_then_refused_by_the_worker_in_words(
    web: Any, owner: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    queued = _uploaded(client, video_files["text_as_mp4"])
    video = client.get(f"{API}{queued['code']}/").json()
    assert (
        video["status"] == "failed" and video["status_message"] and "Traceback" not in video["status_message"]
    )
    assert video["rendition_url"] is None and media_files(private_media_root) == []


def test_duplicate_upload_is_409_naming_the_existing_copy(
    web: Any, owner: Any, video_files: dict[str, Path]
) -> None:
    client = web(owner)
    first = _uploaded(client, video_files["mp4"])
    error = assert_error_shape(api_upload(client, video_files["mp4"], name="again"), 409)
    assert "already uploaded this video" in error["message"] and first["code"] in error["message"]
    assert Video.objects.count() == 1


def test_oversized_upload_is_413_and_never_reaches_disk_even_through_a_session(
    web: Any,
    owner: Any,
    settings: Any,
    private_media_root: Path,
    upload_spy: dict[str, int],
) -> None:
    settings.GRADCAM_MAX_VIDEO_BYTES = 100 * 1024
    # A session's CSRF check reads the body before the view runs: the limit must already hold.
    part = b"\1" * (80 * 1024)
    response = web(owner).post(
        API, data={"name": "Many parts"}, files=[("file", (f"p{i}.mp4", part, "video/mp4")) for i in range(5)]
    )
    error = assert_error_shape(response, 413)
    assert "larger than the limit of 100.0\xa0KB" in error["message"].replace("kb", "KB")
    assert upload_spy["file"] <= settings.GRADCAM_MAX_VIDEO_BYTES
    assert Video.objects.count() == 0 and media_files(private_media_root) == []


def test_uploads_are_throttled_per_user_with_retry_after(
    web: Any, owner: Any, settings: Any, video_files: dict[str, Path]
) -> None:
    with throttle_rate(settings, "uploads", "1/hour"):
        client = web(owner)
        assert api_upload(client, video_files["mp4"]).status_code == 202
        refused = api_upload(client, video_files["avi"])
        assert_error_shape(refused, 429)
        assert int(refused.headers["Retry-After"]) > 0
        assert client.get(API).status_code == 200  # reads are not throttled
    assert Video.objects.count() == 1


def test_oversized_model_upload_through_a_session_never_reaches_disk_either(
    web: Any, owner: Any, settings: Any, private_media_root: Path, upload_spy: dict[str, int]
) -> None:
    """The classifiers endpoint shares the videos' upload limit mixin (the same CSRF reading)."""
    from analyses.library.forms import CLASS_MAP_MAX_BYTES
    from analyses.models import Classifier

    settings.GRADCAM_MAX_MODEL_BYTES = 100 * 1024
    part = b"\1" * (80 * 1024)
    response = web(owner).post(
        "/api/v1/classifiers/",
        data={"name": "Many parts"},
        files=[("file", (f"p{i}.h5", part, "application/octet-stream")) for i in range(5)],
    )
    assert_error_shape(response, 413)
    # Every file part counts against the sum of the form's file limits (model + class map).
    assert upload_spy["file"] <= settings.GRADCAM_MAX_MODEL_BYTES + CLASS_MAP_MAX_BYTES < 5 * len(part)
    assert Classifier.objects.count() == 0 and media_files(private_media_root) == []
