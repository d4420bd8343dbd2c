"""Every number a user sends is bounded before use, and nothing the engine wrote is trusted.

The engine parses untrusted files, so its output folder and manifest are treated as hostile: a
manifest may name files outside its folder, claim any media type, list a file many times, and
the folder may hold symlinks. Over real HTTP, as an attacker would try it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture
def uploaded(
    web: Any, owner: Any, model_files: dict[str, Path], video_files: dict[str, Path]
) -> dict[str, Any]:
    client = web(owner)
    classifier = Classifier.objects.get(
        code=code_from_location(upload_model(client, model_files["good_h5"]), prefix="/classifiers/")
    )
    video = Video.objects.get(
        code=code_from_location(upload_video(client, video_files["avi"]), prefix="/videos/")
    )
    return {"client": client, "classifier": classifier, "video": video}


# --------------------------------------------------------------------------- numbers
def test_a_huge_expected_class_on_a_video_is_refused_in_words(
    web: Any, owner: Any, video_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    response = upload_video(client, video_files["avi"], expected_class=str(10**30))
    assert response.status_code == 400
    assert "less than or equal to" in response.text or "class index from 0" in response.text
    assert Video.objects.count() == 0 and media_files(private_media_root) == []
    # The service refuses it too, whatever the form lets through.
    from analyses.library.services import LibraryError, video_update

    code = code_from_location(upload_video(client, video_files["avi"]), prefix="/videos/")
    video = Video.objects.get(code=code)
    with pytest.raises(LibraryError, match="class index from 0"):
        video_update(video=video, actor=owner, name="x", description="", expected_class="9" * 5000, team=None)
    edit = client.post(f"/videos/{code}/", data={"name": "x", "expected_class": str(10**30)})
    assert edit.status_code == 400
    assert Video.objects.get(code=code).expected_class is None


def test_a_range_header_of_thousands_of_digits_is_ignored_not_a_crash(uploaded: dict[str, Any]) -> None:
    client, video = uploaded["client"], uploaded["video"]
    url = f"/videos/{video.code}/rendition.mp4"
    whole = client.get(url)
    assert whole.status_code == 200
    for header in (
        f"bytes={'9' * 5000}-",
        f"bytes=0-{'9' * 5000}",
        f"bytes=-{'1' * 5000}",
        "bytes=" + "0-1," * 5000,
    ):
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 200, header[:40]
        assert response.content == whole.content
    partial = client.get(url, headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.content) == 100


def test_analysis_form_numbers_are_bounded(uploaded: dict[str, Any]) -> None:
    client, classifier, video = uploaded["client"], uploaded["classifier"], uploaded["video"]
    base = {
        "classifier": str(classifier.code),
        "video": str(video.code),
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
        "mean": "",
        "std": "",
        "title": "",
    }
    for field, value in (
        ("expected_class", "9" * 5000),
        ("expected_class", str(10**30)),
        ("alpha", "1e999"),
        ("frame_stride", "9" * 400),
        ("mean", "1," * 5000),
        ("bbox_threshold", "nan"),
    ):
        data = {**base, field: value}
        if field == "bbox_threshold":
            data["bbox_mode"] = "threshold"
        response = client.post("/analyses/new/", data=data)
        assert response.status_code == 400, (field, response.status_code)
        assert "Traceback" not in response.text and len(response.text) < 200_000
    assert Analysis.objects.count() == 0


def test_pooling_is_refused_for_the_element_wise_methods(uploaded: dict[str, Any], owner: Any) -> None:
    from analyses.runs.params import AnalysisError
    from analyses.runs.services import analysis_create

    classifier, video = uploaded["classifier"], uploaded["video"]
    with pytest.raises(AnalysisError, match="pooling does not apply"):
        analysis_create(
            user=owner,
            classifier=classifier,
            video=video,
            expected_class=None,
            params={"method": "layercam", "pooling": "temporal"},
        )
    analysis = analysis_create(
        user=owner, classifier=classifier, video=video, expected_class=None, params={"method": "hirescam"}
    )
    assert analysis.params["pooling"] is None
    assert (
        analysis_create(
            user=owner,
            classifier=classifier,
            video=video,
            expected_class=None,
            params={"method": "gradcam++", "pooling": "temporal"},
        ).params["pooling"]
        == "temporal"
    )


def test_scaling_follows_what_the_models_input_layers_expect_unless_chosen(
    uploaded: dict[str, Any], owner: Any
) -> None:
    from analyses.runs.services import analysis_create

    classifier, video = uploaded["classifier"], uploaded["video"]
    Classifier.objects.filter(pk=classifier.pk).update(
        inspection={
            **classifier.inspection,
            "suggested_scaling": "raw",
            "scaling_reason": "The model's first layer Rescaling(scale=0.00392) divides by 255 itself.",
        }
    )
    classifier.refresh_from_db()
    auto = analysis_create(user=owner, classifier=classifier, video=video, expected_class=None, params={})
    assert auto.params["preprocess"]["scaling"] == "raw"
    chosen = analysis_create(
        user=owner,
        classifier=classifier,
        video=video,
        expected_class=None,
        params={"preprocess": {"scaling": "unit"}},
    )
    assert chosen.params["preprocess"]["scaling"] == "unit"
    page = uploaded["client"].get(f"/classifiers/{classifier.code}/")
    assert page.status_code == 200 and "divides by 255 itself" in page.text and "0–255" in page.text


# --------------------------------------------------------------------------- engine output
def _hostile_result(*, owner: Any, classifier: Any, video: Any, media_root: Path, tmp_path: Path) -> Analysis:
    folder = f"analyses/{'a' * 32}/attempt-1"
    root = media_root / folder
    (root / "layers").mkdir(parents=True)
    (root / "layers" / "ok.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (root / "page.html").write_text("<script>alert(1)</script>")
    secret = tmp_path / "secret.txt"
    secret.write_text("the database password")
    os.symlink(secret, root / "layers" / "link.png")
    os.symlink(tmp_path, root / "linked_dir")
    files = [
        {"path": "layers/ok.png", "role": "heatmap_image", "media_type": "text/html"},
        {"path": "page.html", "role": "heatmap_image", "media_type": "text/html"},
        {"path": "layers/link.png", "role": "heatmap_image", "media_type": "image/png"},
        {"path": "linked_dir/secret.txt", "role": "heatmap_image", "media_type": "image/png"},
        {"path": "../../../../etc/passwd", "role": "heatmap_image"},
        {"path": "/etc/passwd", "role": "heatmap_image"},
        {"path": "layers\\..\\..\\x", "role": "heatmap_image"},
        *[{"path": "layers/ok.png", "role": "heatmap_image"}] * 500,
    ]
    manifest = {"files": files, "model": {"selected_layers": []}, "prediction": {}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return Analysis.objects.create(
        owner=owner,
        classifier=classifier,
        video=video,
        status="succeeded",
        stage="done",
        manifest=manifest,
        results_dir=folder,
    )


def test_result_files_trust_nothing_the_engine_wrote(
    uploaded: dict[str, Any], owner: Any, private_media_root: Path, tmp_path: Path
) -> None:
    client = uploaded["client"]
    analysis = _hostile_result(
        owner=owner,
        classifier=uploaded["classifier"],
        video=uploaded["video"],
        media_root=private_media_root,
        tmp_path=tmp_path,
    )
    base = f"/analyses/{analysis.code}/files/"
    image = client.get(base + "layers/ok.png")
    assert (
        image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    )  # our table, not the manifest's
    html_file = client.get(base + "page.html")
    assert html_file.status_code == 200
    assert html_file.headers["Content-Type"] == "application/octet-stream"
    assert html_file.headers["Content-Disposition"].startswith("attachment")
    for name in (
        "layers/link.png",
        "linked_dir/secret.txt",
        "../../../../etc/passwd",
        "%2Fetc%2Fpasswd",
        "layers%5C..%5C..%5Cx",
        "unlisted.png",
    ):
        response = client.get(base + name)
        assert response.status_code == 404, name
        assert b"database password" not in response.content and b"root:" not in response.content
    # The ZIP of a folder with a symlink is refused rather than following it.
    assert client.get(f"/analyses/{analysis.code}/download.zip").status_code == 404


def test_zip_entries_are_clean_relative_names_each_listed_once(
    uploaded: dict[str, Any], owner: Any, private_media_root: Path, tmp_path: Path
) -> None:
    client = uploaded["client"]
    analysis = _hostile_result(
        owner=owner,
        classifier=uploaded["classifier"],
        video=uploaded["video"],
        media_root=private_media_root,
        tmp_path=tmp_path,
    )
    # Without the symlinks (the names that are not clean stay listed: they are skipped).
    root = private_media_root / analysis.results_dir
    (root / "layers" / "link.png").unlink()
    (root / "linked_dir").unlink()
    manifest = dict(analysis.manifest)
    manifest["files"] = [record for record in manifest["files"] if "link" not in record["path"]]
    Analysis.objects.filter(pk=analysis.pk).update(manifest=manifest)
    response = client.get(f"/analyses/{analysis.code}/download.zip")
    assert response.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == ["manifest.json", "layers/ok.png", "page.html"]
