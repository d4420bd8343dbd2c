"""Analysis pages over real HTTP: list, new (with preview), progress JSON, result page, result
files, ZIP, re-run / cancel / delete, for the three personas.

Succeeded analyses hold REAL engine output: `python -m gradcam3d analyze` runs once per session
on the demo model (tests/worker's `demo` fixture) with a mislabelled clip (a wrong prediction,
so inference maps exist) and a correctly labelled one; each test copies a result into its own
MEDIA_ROOT and sets the row as the worker's publish step does.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.jobs import run_queued_tasks
from tests.worker.conftest import demo, demo_video_entry, make_classifier, make_video, run_engine_cli  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def engine_results(demo: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Real analyze output: "wrong" (mislabelled clip) and "right" (correctly labelled clip, one layer)."""
    root = tmp_path_factory.mktemp("engine-results")
    classmap = Path(demo["model_path"]).parent / demo["classmap"]
    results: dict[str, Any] = {}
    for name, mislabelled, extra in (
        ("wrong", True, []),
        ("right", False, ["--layers", demo["inspection"]["conv3d_layers"][-1]]),
    ):
        entry = demo_video_entry(demo, mislabelled=mislabelled)
        out = root / name
        run_engine_cli(
            "analyze",
            str(demo["model_path"]),
            entry["path"],
            "--out",
            str(out),
            "--expected-class",
            str(entry["labelled_class"]),
            "--labels",
            str(classmap),
            *extra,
        )
        results[name] = {
            "dir": out,
            "entry": entry,
            "manifest": json.loads((out / "manifest.json").read_text()),
        }
    assert results["wrong"]["manifest"]["prediction"]["correct"] is False
    assert results["right"]["manifest"]["prediction"]["correct"] is True
    return results


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def library(owner: Any, team: Any, demo: dict[str, Any], media_root: Path) -> dict[str, Any]:
    """The demo classifier and both demo clips, owned by `owner` and shared with `team`."""
    from analyses.models import Classifier, Video

    classifier = make_classifier(
        owner=owner,
        model_path=Path(demo["model_path"]),
        inspection=demo["inspection"],
        media_root=media_root,
        labels=list(demo["class_names"]),
    )
    wrong = make_video(
        owner=owner,
        video_path=Path(demo_video_entry(demo, mislabelled=True)["path"]),
        media_root=media_root,
        expected_class=demo_video_entry(demo, mislabelled=True)["labelled_class"],
    )
    right = make_video(
        owner=owner, video_path=Path(demo_video_entry(demo, mislabelled=False)["path"]), media_root=media_root
    )
    Classifier.objects.filter(pk=classifier.pk).update(team=team)
    Video.objects.filter(pk__in=[wrong.pk, right.pk]).update(team=team)
    classifier.refresh_from_db()
    return {"classifier": classifier, "wrong_video": wrong, "right_video": right}


def publish_result(
    *, owner: Any, team: Any, classifier: Any, video: Any, result: dict[str, Any], media_root: Path
) -> Any:
    """A succeeded Analysis whose folder holds the real engine output (as tasks._publish sets it)."""
    from django.utils import timezone

    from analyses.models import Analysis, AnalysisStatus

    manifest = result["manifest"]
    prediction = manifest["prediction"]
    analysis = Analysis.objects.create(
        owner=owner,
        team=team,
        classifier=classifier,
        video=video,
        expected_class=prediction["expected_class"],
        params={"layers": manifest["model"]["selected_layers"]},
        status=AnalysisStatus.SUCCEEDED,
        stage="done",
        progress=1.0,
        predicted_class=prediction["predicted_class"],
        predictions=prediction,
        timings=manifest["timings"],
        versions=manifest["engine"],
        manifest=manifest,
        finished_at=timezone.now(),
        input_hashes={name: record["sha256"] for name, record in manifest["inputs"].items()},
    )
    folder = f"analyses/{analysis.code.hex}"
    shutil.copytree(result["dir"], media_root / folder)
    Analysis.objects.filter(pk=analysis.pk).update(results_dir=folder)
    analysis.refresh_from_db()
    return analysis


@pytest.fixture
def wrong_analysis(
    owner: Any, team: Any, library: dict[str, Any], engine_results: dict[str, Any], media_root: Path
) -> Any:
    return publish_result(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["wrong_video"],
        result=engine_results["wrong"],
        media_root=media_root,
    )


@pytest.fixture
def queued_analysis(owner: Any, team: Any, library: dict[str, Any]) -> Any:
    from analyses.models import Analysis

    return Analysis.objects.create(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["wrong_video"],
        expected_class=0,
        params={},
        status="queued",
        stage="queued",
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- list and page
def test_list_shows_team_analyses_to_owner_and_member_but_not_to_stranger(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    for user in (owner, member):
        response = web(user).get("/analyses/")
        assert response.status_code == 200
        assert str(wrong_analysis.code) in response.text
        assert "badge-succeeded" in response.text and "New analysis" in response.text
    response = web(stranger).get("/analyses/")
    assert response.status_code == 200 and str(wrong_analysis.code) not in response.text
    assert web().get("/analyses/").status_code == 302  # anonymous: to the login page


def test_result_page_shows_prediction_topk_curves_and_the_three_views_with_every_file_per_layer(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    manifest = wrong_analysis.manifest
    layers = manifest["model"]["selected_layers"]
    frames = len(manifest["preprocess"]["source_frame_indices"])
    for user in (owner, member):
        page = web(user).get(f"/analyses/{wrong_analysis.code}/")
        assert page.status_code == 200
        html = page.text
        assert 'data-testid="verdict">wrong<' in html
        assert (
            manifest["prediction"]["predicted_label"] in html
            and manifest["prediction"]["expected_label"] in html
        )
        assert html.count('class="bar-row') == len(manifest["prediction"]["top_k"])
        assert html.count("<polyline") == len(layers)
        assert 'data-testid="tab-inference"' in html
        base = f"/analyses/{wrong_analysis.code}/files/"
        assert html.count("data-sync-video") == len(layers) + 1  # preprocessed + one per layer
        for index, layer in enumerate(layers):
            folder = f"layers/{index:02d}/"
            assert html.count(f'src="{base}{folder}frames/') == frames, layer
            assert html.count(f'src="{base}{folder}inference/') == 3, layer
        assert manifest["engine"]["tensorflow"] in html and manifest["inputs"]["model"]["sha256"] in html
    assert web(stranger).get(f"/analyses/{wrong_analysis.code}/").status_code == 404


def test_inference_tab_only_when_prediction_differs_from_expected(
    web: Any, owner: Any, team: Any, library: dict[str, Any], engine_results: dict[str, Any], media_root: Path
) -> None:
    right = publish_result(
        owner=owner,
        team=team,
        classifier=library["classifier"],
        video=library["right_video"],
        result=engine_results["right"],
        media_root=media_root,
    )
    page = web(owner).get(f"/analyses/{right.code}/")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="verdict">correct<' in html
    assert 'data-testid="tab-inference"' not in html and "/inference/" not in html
    assert html.count("data-sync-video") == 2  # preprocessed + the one selected layer


# --------------------------------------------------------------------------- files and ZIP
def test_every_manifest_file_is_served_with_its_recorded_bytes_to_owner_and_member_only(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    base = f"/analyses/{wrong_analysis.code}/files/"
    clients = {"owner": web(owner), "member": web(member), "stranger": web(stranger)}
    for record in wrong_analysis.manifest["files"]:
        for name in ("owner", "member"):
            response = clients[name].get(base + record["path"])
            assert response.status_code == 200, (name, record["path"])
            assert response.headers["Content-Type"].startswith(record["media_type"])
            assert sha256(response.content) == record["sha256"]
        assert clients["stranger"].get(base + record["path"]).status_code == 404
    manifest = clients["member"].get(base + "manifest.json")
    assert manifest.status_code == 200 and manifest.json()["inputs"] == wrong_analysis.manifest["inputs"]


def test_file_not_in_manifest_and_path_traversal_are_404(
    web: Any, owner: Any, wrong_analysis: Any, media_root: Path
) -> None:
    (media_root / wrong_analysis.results_dir / "notes.txt").write_text("left by someone")
    (media_root / "secret.txt").write_text("not a result")
    client = web(owner)
    base = f"{client.base_url}/analyses/{wrong_analysis.code}/files/"
    classifier_file = wrong_analysis.classifier.file.name
    for tail in (
        "notes.txt",
        "layers/00/missing.png",
        "%2e%2e/%2e%2e/secret.txt",
        f"..%2f..%2f{classifier_file}",
        "layers/00/..%2f..%2fmanifest.json",
        "%2fetc%2fpasswd",
    ):
        # requests would normalise "../" in the URL; send the encoded form the server decodes.
        request = client.session.prepare_request(requests.Request("GET", base + tail))
        request.url = base + tail
        response = client.session.send(request, allow_redirects=False, timeout=60)
        assert response.status_code == 404, tail


def test_range_request_on_a_heatmap_video_answers_206_with_those_bytes(
    web: Any, member: Any, wrong_analysis: Any
) -> None:
    record = next(item for item in wrong_analysis.manifest["files"] if item["role"] == "heatmap_video")
    url = f"/analyses/{wrong_analysis.code}/files/{record['path']}"
    client = web(member)
    whole = client.get(url).content
    partial = client.get(url, headers={"Range": "bytes=100-1099"})
    assert partial.status_code == 206
    assert partial.headers["Content-Range"] == f"bytes 100-1099/{record['bytes']}"
    assert partial.content == whole[100:1100]


def test_zip_streams_manifest_and_every_file_with_matching_hashes(
    web: Any, owner: Any, member: Any, stranger: Any, wrong_analysis: Any
) -> None:
    url = f"/analyses/{wrong_analysis.code}/download.zip"
    response = web(member).get(url)
    assert response.status_code == 200
    assert (
        response.headers["Content-Type"] == "application/zip"
        and "attachment" in response.headers["Content-Disposition"]
    )
    assert "Content-Length" not in response.headers  # streamed, not built in memory first
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = set(archive.namelist())
    assert "manifest.json" in names
    assert json.loads(archive.read("manifest.json"))["files"] == wrong_analysis.manifest["files"]
    for record in wrong_analysis.manifest["files"]:
        assert sha256(archive.read(record["path"])) == record["sha256"], record["path"]
    assert len(names) == len(wrong_analysis.manifest["files"]) + 1
    assert web(stranger).get(url).status_code == 404


# --------------------------------------------------------------------------- progress
def test_status_json_reports_stage_percent_and_early_prediction_to_viewers_only(
    web: Any, owner: Any, member: Any, stranger: Any, queued_analysis: Any
) -> None:
    from analyses.models import Analysis

    Analysis.objects.filter(pk=queued_analysis.pk).update(
        status="running", stage="computing Grad-CAM", progress=0.4, predicted_class=1
    )
    url = f"/analyses/{queued_analysis.code}/status.json"
    status = web(member).get(url).json()
    assert (status["status"], status["stage"], status["progress"], status["active"]) == (
        "running",
        "computing Grad-CAM",
        40,
        True,
    )
    assert (status["predicted_class"], status["predicted_label"]) == (1, "moving left")
    page = web(owner).get(f"/analyses/{queued_analysis.code}/").text
    assert 'data-testid="progress-card"' in page and "40%" in page and 'data-testid="cancel-button"' in page
    assert web(stranger).get(url).status_code == 404


def test_failed_analysis_shows_its_error_in_words(web: Any, owner: Any, queued_analysis: Any) -> None:
    from analyses.models import Analysis

    message = "The expected class 9 is out of range: this model has 6 classes, numbered 0 to 5."
    Analysis.objects.filter(pk=queued_analysis.pk).update(
        status="failed", stage="failed", error_message=message
    )
    page = web(owner).get(f"/analyses/{queued_analysis.code}/")
    assert page.status_code == 200
    html = page.text
    assert "The analysis failed" in html and "out of range: this model has 6 classes" in html
    assert "Traceback" not in html and f"/analyses/{queued_analysis.code}/rerun/" in html


# --------------------------------------------------------------------------- writes
def test_member_gets_403_and_stranger_404_on_rerun_cancel_delete(
    web: Any, member: Any, stranger: Any, queued_analysis: Any, wrong_analysis: Any
) -> None:
    from analyses.models import Analysis

    for user, expected in ((member, 403), (stranger, 404)):
        client = web(user)
        assert client.get(f"/analyses/{wrong_analysis.code}/rerun/").status_code == expected
        assert (
            client.post(f"/analyses/{wrong_analysis.code}/rerun/", data={"method": "gradcam"}).status_code
            == expected
        )
        assert client.post(f"/analyses/{queued_analysis.code}/cancel/").status_code == expected
        assert client.post(f"/analyses/{wrong_analysis.code}/delete/").status_code == expected
    assert Analysis.objects.get(pk=queued_analysis.pk).status == "queued"
    assert Analysis.objects.filter(pk=wrong_analysis.pk).exists()
    assert Analysis.objects.count() == 2


def test_owner_cancels_a_queued_analysis_and_deletes_a_finished_one_with_its_files(
    web: Any, owner: Any, queued_analysis: Any, wrong_analysis: Any, media_root: Path
) -> None:
    from analyses.models import Analysis

    client = web(owner)
    response = client.post(f"/analyses/{queued_analysis.code}/cancel/")
    assert response.status_code == 302
    assert Analysis.objects.get(pk=queued_analysis.pk).status == "cancelled"
    folder = media_root / wrong_analysis.results_dir
    assert folder.is_dir()
    response = client.post(f"/analyses/{wrong_analysis.code}/delete/")
    assert (response.status_code, response.headers["Location"]) == (302, "/analyses/")
    assert not Analysis.objects.filter(pk=wrong_analysis.pk).exists()
    assert not folder.exists()
    assert client.get(f"/analyses/{wrong_analysis.code}/files/preprocessed.mp4").status_code == 404


def _form_fields(**changes: Any) -> list[tuple[str, Any]]:
    fields: dict[str, Any] = {
        "method": "gradcam",
        "pooling": "global",
        "bbox_mode": "otsu",
        "bbox_threshold": "0.5",
        "colormap": "jet",
        "alpha": "0.3",
        "frame_stride": "2",
        "frame_offset": "1",
        "resize_mode": "stretch",
        "scaling": "unit",
        "mean": "",
        "std": "",
        "team": "",
        "title": "",
        "expected_class": "",
    }
    fields.update({key: value for key, value in changes.items() if key != "layers"})
    pairs = list(fields.items())
    pairs += [("layers", layer) for layer in changes.get("layers", [])]
    return pairs


def test_owner_reruns_with_changed_parameters_linked_to_the_old_analysis(
    web: Any, owner: Any, wrong_analysis: Any
) -> None:
    from analyses.models import Analysis

    client = web(owner)
    form = client.get(f"/analyses/{wrong_analysis.code}/rerun/")
    assert form.status_code == 200 and 'value="0" selected' in form.text  # prefilled expected class
    last_layer = wrong_analysis.classifier.conv3d_layers[-1]
    response = client.post(
        f"/analyses/{wrong_analysis.code}/rerun/",
        data=_form_fields(
            method="gradcam++",
            bbox_mode="threshold",
            bbox_threshold="0.4",
            expected_class="2",
            layers=[last_layer],
        ),
    )
    assert response.status_code == 302, response.text[:2000]
    rerun = Analysis.objects.exclude(pk=wrong_analysis.pk).get()
    assert response.headers["Location"] == f"/analyses/{rerun.code}/"
    assert (rerun.parent_id, rerun.status, rerun.expected_class) == (wrong_analysis.pk, "queued", 2)
    assert (rerun.params["method"], rerun.params["bbox_threshold"], rerun.params["layers"]) == (
        "gradcam++",
        0.4,
        [last_layer],
    )
    assert rerun.video_id == wrong_analysis.video_id and rerun.classifier_id == wrong_analysis.classifier_id
    old_page = client.get(f"/analyses/{wrong_analysis.code}/").text
    assert f"/analyses/{rerun.code}/" in old_page
    assert f"/analyses/{wrong_analysis.code}/" in client.get(f"/analyses/{rerun.code}/").text


# --------------------------------------------------------------------------- new analysis
def test_new_form_defaults_expected_class_from_video_and_ticks_every_layer(
    web: Any, owner: Any, library: dict[str, Any]
) -> None:
    classifier, video = library["classifier"], library["wrong_video"]
    html = web(owner).get(f"/analyses/new/?classifier={classifier.code}&video={video.code}").text
    assert f'<option value="{video.expected_class}" selected>' in html
    assert html.count('name="layers"') == len(classifier.conv3d_layers) and html.count(" checked>") >= len(
        classifier.conv3d_layers
    )


def test_new_form_creates_a_queued_analysis_with_the_chosen_parameters(
    web: Any, owner: Any, team: Any, library: dict[str, Any]
) -> None:
    from analyses.models import Analysis

    classifier, video = library["classifier"], library["right_video"]
    response = web(owner).post(
        "/analyses/new/",
        data=_form_fields(
            classifier=str(classifier.code),
            video=str(video.code),
            expected_class="3",
            method="gradcam++",
            pooling="temporal",
            colormap="viridis",
            alpha="0.5",
            frame_stride="1",
            team=str(team.pk),
            layers=classifier.conv3d_layers[:2],
            title="Two layers",
        ),
    )
    assert response.status_code == 302, response.text[:3000]
    analysis = Analysis.objects.get()
    assert response.headers["Location"] == f"/analyses/{analysis.code}/"
    assert (analysis.owner_id, analysis.team_id, analysis.expected_class, analysis.title) == (
        owner.pk,
        team.pk,
        3,
        "Two layers",
    )
    assert analysis.params["layers"] == classifier.conv3d_layers[:2]
    assert (
        analysis.params["method"],
        analysis.params["pooling"],
        analysis.params["colormap"],
        analysis.params["alpha"],
    ) == ("gradcam++", "temporal", "viridis", 0.5)
    assert analysis.params["preprocess"]["frame_stride"] == 1


def test_new_form_explains_bad_input_in_words_and_creates_nothing(
    web: Any, owner: Any, stranger: Any, library: dict[str, Any]
) -> None:
    from analyses.models import Analysis

    classifier, video = library["classifier"], library["right_video"]
    client = web(owner)
    response = client.post(
        "/analyses/new/",
        data=_form_fields(classifier=str(classifier.code), video=str(video.code), expected_class="17"),
    )
    assert response.status_code == 400 and "out of range" in response.text
    response = client.post(
        "/analyses/new/",
        data=_form_fields(
            classifier=str(classifier.code),
            video=str(video.code),
            bbox_mode="threshold",
            bbox_threshold="1.5",
        ),
    )
    assert response.status_code == 400 and "less than or equal to 0.99" in response.text
    # Someone else's classifier is not a valid choice for the stranger.
    response = web(stranger).post(
        "/analyses/new/", data=_form_fields(classifier=str(classifier.code), video=str(video.code))
    )
    assert response.status_code == 400 and "Select a valid choice" in response.text
    assert Analysis.objects.count() == 0


def test_preview_shows_the_model_frames_and_its_clip_is_private_to_the_user(
    web: Any, owner: Any, member: Any, library: dict[str, Any]
) -> None:
    classifier, video = library["classifier"], library["wrong_video"]
    client = web(owner)
    response = client.post(
        "/analyses/new/",
        data=_form_fields(classifier=str(classifier.code), video=str(video.code), action="preview"),
        headers={"Accept": "application/json"},
    )
    # Queued for a worker: the request does not wait for the video to be decoded.
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["ok"] is True and queued["status"] == "processing" and queued["clip_url"] == ""
    assert client.get(queued["status_url"]).json()["status"] == "processing"
    run_queued_tasks()
    status = client.get(queued["status_url"])
    assert status.status_code == 200
    preview = status.json()
    frames = classifier.input_shape[0]
    assert preview["status"] == "ready" and preview["frame_count"] == frames == len(preview["frames"])
    # The scaling the model gets and the value range it receives (the demo expects [0, 1]).
    assert preview["scaling"] == "[0, 1]"
    assert 0.0 <= preview["input_range"][0] < preview["input_range"][1] <= 1.0
    # The original tool's selection: every 2nd frame from the 2nd, T of them evenly spaced.
    assert all(frame["source_frame"] % 2 == 1 for frame in preview["frames"])
    clip = client.get(preview["clip_url"])
    assert (
        clip.status_code == 200
        and clip.headers["Content-Type"] == "video/mp4"
        and clip.content[4:8] == b"ftyp"
    )
    assert re.fullmatch(r"/analyses/preview/[0-9a-f-]{36}/clip\.mp4", preview["clip_url"])
    for url in (preview["clip_url"], preview["status_url"], preview["page_url"]):
        assert web(member).get(url).status_code == 404
        assert web().get(url).status_code == 302
    # Without JavaScript the same button leads to the preview's own page, which waits for it.
    redirect = client.post(
        "/analyses/new/",
        data=_form_fields(classifier=str(classifier.code), video=str(video.code), action="preview"),
    )
    assert redirect.status_code == 302 and re.fullmatch(
        r"/analyses/preview/[0-9a-f-]{36}/", redirect.headers["Location"]
    )
    waiting = client.get(redirect.headers["Location"])
    assert waiting.status_code == 200 and 'data-testid="processing-state"' in waiting.text
    run_queued_tasks()
    page = client.get(redirect.headers["Location"])
    assert (
        page.status_code == 200 and "/clip.mp4" in page.text and "the model receives values from" in page.text
    )


def test_preview_refusal_is_shown_in_words(web: Any, owner: Any, library: dict[str, Any]) -> None:
    classifier, video = library["classifier"], library["wrong_video"]
    client = web(owner)
    response = client.post(
        "/analyses/new/",
        data=_form_fields(
            classifier=str(classifier.code), video=str(video.code), action="preview", frame_stride="16"
        ),
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 202
    run_queued_tasks()
    status = client.get(response.json()["status_url"])
    assert status.status_code == 200 and status.json()["status"] == "failed"
    error = status.json()["message"]
    assert "frames" in error and "Traceback" not in error and len(error) < 400
    # A form error is answered at once, in words, without queueing anything.
    bad = client.post(
        "/analyses/new/",
        data=_form_fields(
            classifier=str(classifier.code), video=str(video.code), action="preview", frame_stride="99"
        ),
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["ok"] is False and "frame_stride" in bad.json()["errors"]


def test_new_analysis_form_preselects_the_only_classifier_in_the_library(
    web: Any, owner: Any, library: dict[str, Any]
) -> None:
    page = web(owner).get("/analyses/new/")
    assert page.status_code == 200
    assert f'value="{library["classifier"].code}" selected' in page.text
