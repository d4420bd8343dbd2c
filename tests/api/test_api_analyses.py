"""The analyses API over real HTTP, for every persona: the history with its filters, create with
every parameter (and the form's refusals, nothing stored), detail with results, files (Range),
the streamed ZIP, cancel, re-run, delete, and verifications.

Succeeded analyses hold REAL engine output (the analysis pages' session fixtures).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.api.api_helpers import assert_anonymous_refused, send_json, throttle_rate
from tests.api.test_api_foundation import assert_error_shape
from tests.jobs import queued_task_names
from tests.web.test_analysis_pages import (  # noqa: F401 - fixtures shared with the analysis pages
    engine_results,
    library,
    media_root,
    publish_result,
    queued_analysis,
    wrong_analysis,
)
from tests.worker.conftest import demo  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

API = "/api/v1/analyses/"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _audit_count(action: str, **filters: Any) -> int:
    from audit.models import AuditEvent

    return AuditEvent.objects.filter(action=action, **filters).count()


@pytest.fixture
def right_analysis(
    owner: Any, team: Any, library: dict[str, Any], engine_results: dict[str, Any], media_root: Path
) -> Any:
    from analyses.models import Analysis

    analysis = publish_result(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["right_video"],
        result=engine_results["right"],
        media_root=media_root,
    )
    Analysis.objects.filter(pk=analysis.pk).update(title="Correct clip", is_correct=True, confidence=0.9)
    analysis.refresh_from_db()
    return analysis


# --------------------------------------------------------------------------- detail and files
def test_detail_has_status_predictions_manifest_timings_and_every_file_url(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    manifest = wrong_analysis.manifest
    url = f"{API}{wrong_analysis.code}/"
    for user in (owner, member):
        response = web(user).get(url)
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["progress"], body["active"]) == ("succeeded", 100, False)
        assert body["predicted_label"] == manifest["prediction"]["predicted_label"]
        assert body["expected_label"] == manifest["prediction"]["expected_label"]
        assert body["manifest"] == manifest and body["timings"] == manifest["timings"]
        assert body["versions"] == manifest["engine"] and body["input_hashes"]["model"]
        assert body["predictions"]["top_k"] == manifest["prediction"]["top_k"]
        assert len(body["files"]) == len(manifest["files"]) + 1  # and manifest.json
        assert body["zip_url"].endswith(f"/api/v1/analyses/{wrong_analysis.code}/download.zip")
        assert body["can_write"] is (user == owner)
        assert body["classifier"]["code"] == str(wrong_analysis.classifier.code)
        assert _audit_count("analysis.viewed", actor=user) == 1
    assert_error_shape(web(stranger).get(url), 404)
    assert_anonymous_refused(web().get(url))


def test_queued_analysis_detail_has_no_files_and_polling_it_is_not_a_recorded_read(
    web: Any, owner: Any, queued_analysis: Any
) -> None:
    client = web(owner)
    for _ in range(2):
        body = client.get(f"{API}{queued_analysis.code}/").json()
        assert (body["status"], body["active"], body["files"], body["zip_url"]) == ("queued", True, [], None)
    assert _audit_count("analysis.viewed") == 0
    assert_error_shape(client.get(f"{API}{queued_analysis.code}/download.zip"), 404)


def test_files_list_and_one_file_of_each_kind_with_the_recorded_bytes(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    listing_url = f"{API}{wrong_analysis.code}/files/"
    records = {record["path"]: record for record in wrong_analysis.manifest["files"]}
    listing = web(member).get(listing_url, params={"page_size": 100})
    assert listing.status_code == 200
    assert listing.json()["count"] == len(records) + 1
    assert web(member).get(listing_url, params={"page_size": 5}).json()["next"]
    rows: dict[str, dict[str, Any]] = {}
    page: str | None = listing_url + "?page_size=100"
    while page:
        body = web(member).get(page).json()
        rows.update({row["path"]: row for row in body["results"]})
        page = body["next"]
    assert set(rows) == {*records, "manifest.json"}
    one_of_each = {record["role"]: path for path, record in records.items()}
    client = web(member)
    for role, path in one_of_each.items():
        response = client.get(rows[path]["url"])
        assert response.status_code == 200, (role, path)
        assert response.headers["Content-Type"].startswith(records[path]["media_type"])
        assert _sha256(response.content) == records[path]["sha256"] == rows[path]["sha256"]
    manifest = client.get(rows["manifest.json"]["url"])
    assert manifest.status_code == 200 and manifest.json()["files"] == wrong_analysis.manifest["files"]
    downloaded = client.get(rows[one_of_each["heatmap_video"]]["url"], params={"download": "1"})
    assert downloaded.status_code == 200 and "attachment" in downloaded.headers["Content-Disposition"]
    assert _audit_count("analysis.file_downloaded", actor=member) >= 1
    for url in (listing_url, rows["manifest.json"]["url"]):
        assert_error_shape(web(stranger).get(url), 404)
        assert_anonymous_refused(web().get(url))
    assert_error_shape(client.get(f"{listing_url}notes.txt"), 404)
    assert_error_shape(client.get(f"{listing_url}layers/00/missing.png"), 404)


def test_heatmap_video_answers_a_range_with_206_and_those_bytes(
    web: Any, member: Any, wrong_analysis: Any
) -> None:
    record = next(item for item in wrong_analysis.manifest["files"] if item["role"] == "heatmap_video")
    url = f"{API}{wrong_analysis.code}/files/{record['path']}"
    client = web(member)
    whole = client.get(url, headers={"Accept": "video/mp4"}).content
    partial = client.get(url, headers={"Range": "bytes=100-1099", "Accept": "video/mp4"})
    assert partial.status_code == 206
    assert partial.headers["Content-Range"] == f"bytes 100-1099/{record['bytes']}"
    assert partial.content == whole[100:1100]


def test_zip_is_streamed_with_every_file_and_recorded(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    url = f"{API}{wrong_analysis.code}/download.zip"
    response = web(member).get(url, headers={"Accept": "application/zip"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in response.headers  # streamed, not built in memory first
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    assert json.loads(archive.read("manifest.json"))["files"] == wrong_analysis.manifest["files"]
    for record in wrong_analysis.manifest["files"]:
        assert _sha256(archive.read(record["path"])) == record["sha256"], record["path"]
    assert _audit_count("analysis.zip_downloaded", actor=member) == 1
    assert_error_shape(web(stranger).get(url), 404)
    assert_anonymous_refused(web().get(url))


# --------------------------------------------------------------------------- history
def test_list_takes_the_history_pages_filters_and_sorts(
    web: Any,
    owner: Any,
    member: Any,
    stranger: Any,
    wrong_analysis: Any,
    right_analysis: Any,
    queued_analysis: Any,
) -> None:
    client = web(owner)

    def codes(**params: Any) -> list[str]:
        response = client.get(API, params=params)
        assert response.status_code == 200, response.text
        return [row["code"] for row in response.json()["results"]]

    wrong, right, queued = (str(item.code) for item in (wrong_analysis, right_analysis, queued_analysis))
    assert set(codes()) == {wrong, right, queued}
    assert set(codes(status="succeeded")) == {wrong, right}
    assert codes(outcome="correct") == [right]
    assert codes(video=str(right_analysis.video.code)) == [right]
    assert codes(q="Correct clip") == [right]
    assert codes(sort="-confidence")[0] == right
    assert codes(sort="date") == [wrong, right, queued]
    assert codes(predicted=str(right_analysis.predicted_class), status="succeeded")[0] in (wrong, right)
    assert set(codes(owner=owner.username, team=str(wrong_analysis.team.code))) == {wrong, right, queued}
    assert codes(created_after="2000-01-01", page_size=1, page=3) == [codes()[2]]
    for params, field in (
        ({"status": "nope"}, "status"),
        ({"sort": "size"}, "sort"),
        ({"video": "x"}, "video"),
    ):
        error = assert_error_shape(client.get(API, params=params), 400)
        assert field in error["fields"]
    assert assert_error_shape(client.get(API, params={"expected": "9" * 12}), 400)["fields"]["expected"]
    member_view = web(member).get(API, params={"shared": "true"}).json()
    assert member_view["count"] == 3  # the team's analyses, shared with the member
    assert web(stranger).get(API).json()["count"] == 0
    assert_anonymous_refused(web().get(API))


# --------------------------------------------------------------------------- create
def _create_body(library: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "classifier": str(library["classifier"].code),
        "video": str(library["right_video"].code),
        **changes,
    }


def test_create_takes_every_form_parameter_and_queues_the_analysis(
    web: Any, owner: Any, team: Any, library: dict[str, Any]
) -> None:
    from analyses.models import Analysis

    classifier = library["classifier"]
    body = _create_body(
        library,
        expected_class=3,
        title="Two layers",
        team=str(team.code),
        layers=classifier.conv3d_layers[:2],
        method="gradcam++",
        pooling="temporal",
        bbox_threshold=0.4,
        colormap="viridis",
        alpha=0.5,
        top_k=2,
        inference_frames="all",
        preprocess={
            "frame_stride": 1,
            "frame_offset": 0,
            "resize_mode": "letterbox",
            "scaling": "mean_std",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25],
        },
    )
    response = send_json(web(owner), "POST", API, body)
    assert response.status_code == 202, response.text
    created = response.json()
    analysis = Analysis.objects.get()
    assert created["code"] == str(analysis.code) and created["status"] == "queued" and created["active"]
    assert (analysis.owner_id, analysis.team_id, analysis.expected_class, analysis.title) == (
        owner.pk,
        team.pk,
        3,
        "Two layers",
    )
    params = analysis.params
    assert params["layers"] == classifier.conv3d_layers[:2]
    assert (params["method"], params["pooling"], params["bbox_threshold"], params["colormap"]) == (
        "gradcam++",
        "temporal",
        0.4,
        "viridis",
    )
    assert (params["alpha"], params["top_k"], params["inference_frames"]) == (0.5, 2, "all")
    assert params["preprocess"] == {
        "frame_stride": 1,
        "frame_offset": 0,
        "resize_mode": "letterbox",
        "scaling": "mean_std",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25],
    }
    assert created["params"] == params
    assert _audit_count("analysis.created", actor=owner) == 1
    assert queued_task_names()  # enqueued on commit for the worker


def test_create_with_only_the_inputs_uses_the_forms_defaults(
    web: Any, owner: Any, library: dict[str, Any]
) -> None:
    response = send_json(web(owner), "POST", API, _create_body(library))
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert (params["method"], params["bbox_threshold"], params["colormap"], params["alpha"]) == (
        "gradcam",
        None,
        "jet",
        0.3,
    )
    assert params["layers"] == library["classifier"].conv3d_layers
    assert (params["preprocess"]["frame_stride"], params["preprocess"]["frame_offset"]) == (2, 1)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"expected_class": 17}, "expected_class", "out of range"),
        ({"expected_class": "cat"}, "expected_class", "must be a class number"),
        ({"bbox_threshold": 1.5}, "bbox_threshold", "less than or equal to 0.99"),
        ({"alpha": "strong"}, "alpha", "Enter a number."),
        ({"method": "magic"}, "method", "Select a valid choice"),
        ({"layers": ["no_such_layer"]}, "layers", "Select a valid choice"),
        ({"top_k": 99}, "top_k", "must be between 1 and"),
        ({"inference_frames": "some"}, "inference_frames", "not a valid inference frames"),
        ({"preprocess": {"frame_stride": 99}}, "frame_stride", "less than or equal to 16"),
        ({"preprocess": {"scaling": "mean_std"}}, "scaling", "needs both the mean and the std"),
        ({"preprocess": {"mean": [1, 2]}}, "mean", "Give one mean value or one per channel"),
        ({"preprocess": {"gamma": 2}}, "preprocess", "Unknown preprocessing option(s): gamma."),
        ({"preprocess": "fast"}, "preprocess", "must be a set of named values"),
        ({"video_codec": "h265"}, "video_codec", "Unknown analysis parameter(s): video_codec."),
        ({"layers": [["nested"]]}, "layers", "not a list or an object"),
        ({"classifier": "00000000-0000-4000-8000-000000000000"}, "classifier", "Select a valid choice"),
    ],
)
def test_create_refuses_bad_parameters_in_the_forms_words_and_stores_nothing(
    web: Any, owner: Any, library: dict[str, Any], changes: dict[str, Any], field: str, words: str
) -> None:
    from analyses.models import Analysis

    response = send_json(web(owner), "POST", API, _create_body(library, **changes))
    error = assert_error_shape(response, 400)
    fields = error["fields"]
    assert field in fields, fields
    assert words in " ".join(fields[field]), fields
    assert Analysis.objects.count() == 0 and _audit_count("analysis.created") == 0


def test_create_refuses_inputs_the_user_may_not_use_a_foreign_team_and_a_non_object_body(
    web: Any, owner: Any, stranger: Any, team: Any, library: dict[str, Any]
) -> None:
    from analyses.models import Analysis

    error = assert_error_shape(send_json(web(stranger), "POST", API, _create_body(library)), 400)
    assert "Select a valid choice" in error["fields"]["classifier"][0]
    assert "Select a valid choice" in error["fields"]["video"][0]
    error = assert_error_shape(
        send_json(web(stranger), "POST", API, {**_create_body(library), "team": str(team.code)}), 400
    )
    assert error["fields"]["team"] == ["You can choose only a team you belong to."]
    assert assert_error_shape(send_json(web(owner), "POST", API, [1, 2]), 400)["message"]
    assert Analysis.objects.count() == 0
    assert_anonymous_refused(send_json(web(), "POST", API, _create_body(library)))


def test_create_over_the_active_analyses_limit_is_409_in_the_pages_words(
    web: Any, owner: Any, settings: Any, library: dict[str, Any], queued_analysis: Any
) -> None:
    from analyses.models import Analysis

    settings.GRADCAM_QUOTA_ACTIVE_ANALYSES = 1
    error = assert_error_shape(send_json(web(owner), "POST", API, _create_body(library)), 409)
    assert "already have 1 analyses queued or running" in error["message"]
    assert Analysis.objects.count() == 1


def test_analyses_started_are_throttled_per_user_with_retry_after(
    web: Any, owner: Any, settings: Any, library: dict[str, Any], wrong_analysis: Any
) -> None:
    from analyses.models import Analysis

    with throttle_rate(settings, "analyses", "1/hour"):
        client = web(owner)
        assert send_json(client, "POST", API, _create_body(library)).status_code == 202
        for url in (API, f"{API}{wrong_analysis.code}/rerun/", f"{API}{wrong_analysis.code}/verify/"):
            refused = send_json(client, "POST", url, _create_body(library) if url == API else {})
            assert_error_shape(refused, 429)
            assert int(refused.headers["Retry-After"]) > 0
        assert client.get(API).status_code == 200  # reads are not throttled
    assert Analysis.objects.count() == 2


# --------------------------------------------------------------------------- cancel, re-run, delete
def test_cancel_is_the_owners_member_403_stranger_404_and_a_finished_one_409(
    web: Any, owner: Any, member: Any, stranger: Any, queued_analysis: Any, wrong_analysis: Any
) -> None:
    from analyses.models import Analysis

    url = f"{API}{queued_analysis.code}/cancel/"
    assert_error_shape(send_json(web(member), "POST", url), 403)
    assert_error_shape(send_json(web(stranger), "POST", url), 404)
    assert_anonymous_refused(send_json(web(), "POST", url))
    assert Analysis.objects.get(pk=queued_analysis.pk).status == "queued"
    response = send_json(web(owner), "POST", url)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = assert_error_shape(send_json(web(owner), "POST", url), 409)
    assert "already cancelled" in again["message"]
    done = assert_error_shape(send_json(web(owner), "POST", f"{API}{wrong_analysis.code}/cancel/"), 409)
    assert "already succeeded" in done["message"]
    assert _audit_count("analysis.cancelled", actor=owner) == 1


def test_rerun_changes_the_given_parameters_keeps_the_others_and_links_to_its_parent(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    from analyses.models import Analysis

    url = f"{API}{wrong_analysis.code}/rerun/"
    change = {"method": "gradcam++", "bbox_threshold": 0.4, "expected_class": 2}
    assert_error_shape(send_json(web(member), "POST", url, change), 403)
    assert_error_shape(send_json(web(stranger), "POST", url, change), 404)
    assert_anonymous_refused(send_json(web(), "POST", url, change))
    refused = assert_error_shape(send_json(web(owner), "POST", url, {"video": str(wrong_analysis.code)}), 400)
    assert "keeps the model, the video and the team" in refused["fields"]["video"][0]
    assert Analysis.objects.count() == 1
    last_layer = wrong_analysis.classifier.conv3d_layers[-1]
    response = send_json(web(owner), "POST", url, {**change, "layers": [last_layer]})
    assert response.status_code == 202, response.text
    rerun = Analysis.objects.exclude(pk=wrong_analysis.pk).get()
    body = response.json()
    assert body["code"] == str(rerun.code) and body["parent"]["code"] == str(wrong_analysis.code)
    assert (rerun.parent_id, rerun.status, rerun.expected_class) == (wrong_analysis.pk, "queued", 2)
    assert (rerun.params["method"], rerun.params["bbox_threshold"], rerun.params["layers"]) == (
        "gradcam++",
        0.4,
        [last_layer],
    )
    assert rerun.params["preprocess"]["frame_stride"] == 2 and rerun.params["colormap"] == "jet"
    assert (rerun.video_id, rerun.classifier_id, rerun.team_id) == (
        wrong_analysis.video_id,
        wrong_analysis.classifier_id,
        wrong_analysis.team_id,
    )
    original = web(member).get(f"{API}{wrong_analysis.code}/").json()
    assert [item["code"] for item in original["reruns"]] == [str(rerun.code)]
    bad = assert_error_shape(send_json(web(owner), "POST", url, {"alpha": 7}), 400)
    assert "less than or equal to 1" in bad["fields"]["alpha"][0]
    assert Analysis.objects.count() == 2


def test_delete_is_the_owners_with_the_files_and_a_running_one_is_409(
    web: Any,
    owner: Any,
    member: Any,
    stranger: Any,
    wrong_analysis: Any,
    queued_analysis: Any,
    media_root: Path,
) -> None:
    from analyses.models import Analysis

    url = f"{API}{wrong_analysis.code}/"
    assert_error_shape(send_json(web(member), "DELETE", url), 403)
    assert_error_shape(send_json(web(stranger), "DELETE", url), 404)
    assert_anonymous_refused(send_json(web(), "DELETE", url))
    folder = media_root / wrong_analysis.results_dir
    assert folder.is_dir()
    response = send_json(web(owner), "DELETE", url)
    assert response.status_code == 200 and response.json()["message"]
    assert not Analysis.objects.filter(pk=wrong_analysis.pk).exists() and not folder.exists()
    assert_error_shape(web(owner).get(url), 404)
    Analysis.objects.filter(pk=queued_analysis.pk).update(status="running")
    running = assert_error_shape(send_json(web(owner), "DELETE", f"{API}{queued_analysis.code}/"), 409)
    assert "cancel it" in running["message"]
    assert Analysis.objects.filter(pk=queued_analysis.pk).exists()


# --------------------------------------------------------------------------- verify
def test_verify_is_queued_for_any_viewer_one_at_a_time_and_readable_by_viewers_only(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any, queued_analysis: Any
) -> None:
    from analyses.models import Verification

    url = f"{API}{wrong_analysis.code}/verify/"
    assert_error_shape(send_json(web(stranger), "POST", url), 404)
    assert_anonymous_refused(send_json(web(), "POST", url))
    response = send_json(web(member), "POST", url)  # read-only, yet may verify: it changes nothing
    assert response.status_code == 202, response.text
    queued = response.json()
    verification = Verification.objects.get()
    assert queued["code"] == str(verification.code) and queued["status"] == "queued"
    assert queued["requested_by"] == {"username": member.username}
    assert queued["analysis"]["code"] == str(wrong_analysis.code)
    again = assert_error_shape(send_json(web(owner), "POST", url), 409)
    assert "already being verified" in again["message"]
    assert Verification.objects.count() == 1
    not_done = assert_error_shape(send_json(web(owner), "POST", f"{API}{queued_analysis.code}/verify/"), 409)
    assert "Only a finished analysis" in not_done["message"]
    for user in (owner, member):
        listing = web(user).get(f"{API}{wrong_analysis.code}/verifications/")
        assert listing.status_code == 200 and [row["code"] for row in listing.json()["results"]] == [
            queued["code"]
        ]
        detail = web(user).get(queued["url"])
        assert detail.status_code == 200 and detail.json()["status"] == "queued"
    assert_error_shape(web(stranger).get(f"{API}{wrong_analysis.code}/verifications/"), 404)
    assert_error_shape(web(stranger).get(queued["url"]), 404)
    assert_anonymous_refused(web().get(queued["url"]))
    assert _audit_count("analysis.verify_requested", actor=member) == 1


def test_every_runs_endpoint_is_in_the_schema(web: Any, owner: Any) -> None:
    paths = (
        web(owner)
        .get("/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})
        .json()["paths"]
    )
    for path in (
        "/api/v1/analyses/",
        "/api/v1/analyses/{code}/",
        "/api/v1/analyses/{code}/cancel/",
        "/api/v1/analyses/{code}/rerun/",
        "/api/v1/analyses/{code}/verify/",
        "/api/v1/analyses/{code}/verifications/",
        "/api/v1/analyses/{code}/files/",
        "/api/v1/analyses/{code}/files/{path}",
        "/api/v1/analyses/{code}/download.zip",
        "/api/v1/verifications/{code}/",
        "/api/v1/videos/",
        "/api/v1/videos/{code}/",
        "/api/v1/videos/{code}/original/",
        "/api/v1/videos/{code}/rendition.mp4",
        "/api/v1/videos/{code}/poster.jpg",
    ):
        assert path in paths, path
    history = {parameter["name"] for parameter in paths["/api/v1/analyses/"]["get"]["parameters"]}
    from analyses.runs.filters import HistoryFilter

    form_fields = set(HistoryFilter().form.fields) - {"created"} | {"created_after", "created_before"}
    assert form_fields <= history  # the same query parameters as the history page
