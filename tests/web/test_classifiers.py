"""Classifier library over real HTTP: upload, inspection results, every refusal, duplicates."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from analyses.library.services import InvalidClassMap, parse_class_map
from analyses.models import Classifier
from audit.models import AuditEvent
from tests.class_map_cases import CLASS_MAP_CASES
from tests.jobs import queued_task_names, run_queued_tasks
from tests.web.library_factories import (  # noqa: F401 - fixtures
    MODEL_CLASSES,
    MODEL_SHAPE,
    code_from_location,
    media_files,
    model_files,
    private_media_root,
    sha256_of,
    upload_model,
    upload_spy,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_uploaded_h5_is_inspected_stored_under_a_generated_name_and_audited(
    web: Any, owner: Any, team: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    response = upload_model(
        client,
        model_files["good_h5"],
        process=False,
        name="Tiny C3D",
        team=str(team.pk),
        class_map_text="0: Basketball\n2: Diving",
    )
    assert response.status_code == 302, response.text[:2000]
    code = code_from_location(response, prefix="/classifiers/")
    # The upload answered before anything parsed the file: the row waits for a worker.
    waiting = Classifier.objects.get(code=code)
    assert (waiting.status, waiting.num_classes, waiting.file.name.endswith(".pending")) == (
        "processing",
        0,
        True,
    )
    assert queued_task_names() == [f"classifier-{waiting.pk}"]
    page = client.get(f"/classifiers/{code}/")
    assert page.status_code == 200 and 'data-testid="processing-state"' in page.text
    assert client.get("/analyses/new/").text.count(code) == 0  # not usable until inspected
    run_queued_tasks()
    classifier = Classifier.objects.get(code=code)
    assert classifier.status == "ready"
    assert classifier.input_shape == list(MODEL_SHAPE)
    assert classifier.num_classes == MODEL_CLASSES
    assert [layer.split("/")[-1] for layer in classifier.conv3d_layers] == ["conv3d_a", "conv3d_b"]
    assert classifier.class_labels == ["Basketball", "", "Diving"]
    assert classifier.file_format == "h5"
    assert classifier.sha256 == sha256_of(model_files["good_h5"])
    assert classifier.original_filename == "tiny_c3d.h5"
    stored = private_media_root / classifier.file.name
    assert stored.parent == private_media_root / "classifiers"
    assert stored.suffix == ".h5" and "tiny_c3d" not in stored.name
    assert stored.read_bytes() == model_files["good_h5"].read_bytes()
    assert media_files(private_media_root) == [stored]  # the temp copy is gone
    assert AuditEvent.objects.filter(action="classifier.created", target_code=classifier.code).count() == 1
    assert AuditEvent.objects.filter(action="classifier.uploaded", target_code=classifier.code).count() == 1

    page = client.get(f"/classifiers/{code}/")
    assert page.status_code == 200
    for text in ("4 × 16 × 16 × 3", "conv3d_a", "Basketball", "Diving", classifier.sha256, "Vision Lab"):
        assert text in html.unescape(page.text)
    assert "Tiny C3D" in client.get("/classifiers/").text


def test_keras_v3_file_is_accepted_and_stored_with_keras_extension(
    web: Any, owner: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    response = upload_model(web(owner), model_files["good_keras"])
    assert response.status_code == 302, response.text[:2000]
    classifier = Classifier.objects.get()
    assert classifier.file_format == "keras"
    assert classifier.file.name.endswith(".keras")


@pytest.mark.parametrize(
    ("variant", "expected_words"),
    [
        ("empty", ["empty"]),
        ("truncated", ["truncated", "corrupted"]),
        ("not_keras", ["not a keras model"]),
        ("weights_only", ["only weights", "weights only"]),
        ("no_conv3d", ["no conv3d"]),
        ("input_2d", ["2d"]),
        ("absurd_shape", ["absurd", "too large"]),
        ("lambda", ["lambda layer"]),
        ("custom_object", ["custom"]),
    ],
)
def test_refused_model_shows_why_and_stores_nothing(
    web: Any,
    owner: Any,
    model_files: dict[str, Path],
    private_media_root: Path,
    variant: str,
    expected_words: list[str],
) -> None:
    client = web(owner)
    response = upload_model(client, model_files[variant])
    if variant == "empty":  # known before the file is stored: refused by the upload itself
        assert response.status_code == 400, response.status_code
        assert "empty" in html.unescape(
            response.text.split('data-testid="error-file"', 1)[1].split("</ul>", 1)[0]
        )
        assert Classifier.objects.count() == 0 and media_files(private_media_root) == []
        return
    message = _refusal_after_processing(client, response)
    assert any(word in message for word in expected_words), message
    classifier = Classifier.objects.get()
    assert (classifier.status, classifier.file.name, classifier.num_classes) == ("failed", "", 0)
    assert media_files(private_media_root) == []
    assert not AuditEvent.objects.filter(action="classifier.created").exists()
    assert AuditEvent.objects.filter(action="classifier.refused").count() == 1
    # The refused upload is its owner's record of what happened, shared with nobody, and
    # never offered for an analysis; the same file may be uploaded again.
    assert client.get("/analyses/new/").text.count(str(classifier.code)) == 0
    again = upload_model(client, model_files[variant], process=False)
    assert again.status_code == 302 and again.headers["Location"] != response.headers["Location"]


def test_lambda_code_in_an_uploaded_model_never_runs(
    web: Any, owner: Any, model_files: dict[str, Path]
) -> None:
    marker = model_files["lambda_marker"]
    assert not marker.exists()
    client = web(owner)
    response = upload_model(client, model_files["lambda"])
    assert "lambda" in _refusal_after_processing(client, response)
    assert not marker.exists(), "the Lambda's code was executed while inspecting the upload"


def test_same_file_uploaded_twice_by_one_owner_redirects_to_the_first(
    web: Any, owner: Any, member: Any, team: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    first = upload_model(client, model_files["good_h5"], name="First")
    second = upload_model(client, model_files["good_h5"], name="Second")
    assert second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    assert Classifier.objects.count() == 1
    assert len(media_files(private_media_root)) == 1
    page = client.get(second.headers["Location"])
    assert "already uploaded this model" in html.unescape(page.text)
    # Another user uploading the same bytes gets their own copy.
    assert upload_model(web(member), model_files["good_h5"]).status_code == 302
    assert Classifier.objects.count() == 2


def test_class_map_file_upload_and_index_errors(web: Any, owner: Any, model_files: dict[str, Path]) -> None:
    client = web(owner)

    def upload_with_class_map(class_map: bytes) -> Any:
        with model_files["good_h5"].open("rb") as model:
            return client.post(
                "/classifiers/",
                data={"name": "With map"},
                files={
                    "file": ("m.h5", model, "application/octet-stream"),
                    "class_map_file": ("ClassMap.txt", class_map, "text/plain"),
                },
            )

    # Indices are checked against the model's class count once the model is inspected.
    response = upload_with_class_map(b"0: Walk\n1: Run\n5: Jump\n")
    run_queued_tasks()
    message = _refusal_after_processing(client, response)
    assert "class 5" in message and "3 classes" in message
    assert Classifier.objects.get().status == "failed"
    response = upload_with_class_map(b"0: Walk\n1: Run\n2: Jump\n")
    assert response.status_code == 302
    run_queued_tasks()
    assert Classifier.objects.get(status="ready").class_labels == ["Walk", "Run", "Jump"]


def test_a_twenty_byte_class_map_cannot_ask_for_ten_billion_labels(
    web: Any, owner: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    import time

    started = time.monotonic()
    with pytest.raises(InvalidClassMap, match="far beyond"):
        parse_class_map(text="0: a\n9999999999: b", num_classes=3)
    with pytest.raises(InvalidClassMap, match="far beyond"):
        parse_class_map(text="0: a\n" + "9" * 5000 + ": b", num_classes=3)
    with pytest.raises(InvalidClassMap, match="model has 3 classes"):
        parse_class_map(text="0: a\n99999: b", num_classes=3)
    assert time.monotonic() - started < 5  # refused by reading the text, not by building lists
    client = web(owner)
    response = upload_model(client, model_files["good_h5"], class_map_text="0: a\n9999999999: b")
    assert response.status_code == 400
    assert "far beyond" in html.unescape(response.text)
    assert Classifier.objects.count() == 0 and media_files(private_media_root) == []


def _refusal_after_processing(client: Any, response: Any) -> str:
    """An upload the worker refused: accepted (302 to its page), whose page now says why."""
    assert response.status_code == 302, response.text[:3000]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert 'data-testid="refused-state"' in page.text, page.text[:3000]
    return html.unescape(
        page.text.split('data-testid="refusal-reason">', 1)[1].split("</strong>", 1)[0]
    ).lower()


def test_class_map_parser_reads_both_forms_and_explains_mistakes() -> None:
    assert parse_class_map(text="0: Basketball\n1: Biking\n", num_classes=3) == ["Basketball", "Biking", ""]
    assert parse_class_map(text="Walk\nRun\n\n# comment\nJump", num_classes=3) == ["Walk", "Run", "Jump"]
    assert parse_class_map(text="", num_classes=2) == ["", ""]
    with pytest.raises(InvalidClassMap, match="appears twice"):
        parse_class_map(text="0: a\n0: b", num_classes=2)
    with pytest.raises(InvalidClassMap, match="no index"):
        parse_class_map(text="0: a\nb", num_classes=2)
    with pytest.raises(InvalidClassMap, match="class 3"):
        parse_class_map(text="Walk\nRun\nJump\nSit", num_classes=3)


def test_model_larger_than_the_limit_is_refused_with_the_limit_in_words(
    web: Any, owner: Any, settings: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    settings.GRADCAM_MAX_MODEL_BYTES = 1024
    response = upload_model(web(owner), model_files["good_h5"])
    assert response.status_code == 400
    assert "larger than the limit" in response.text
    assert Classifier.objects.count() == 0
    assert media_files(private_media_root) == []


def test_owner_edits_labels_and_deletes_which_removes_the_file(
    web: Any, owner: Any, model_files: dict[str, Path], private_media_root: Path
) -> None:
    client = web(owner)
    code = code_from_location(upload_model(client, model_files["good_h5"]), prefix="/classifiers/")
    response = client.post(
        f"/classifiers/{code}/",
        data={"name": "Renamed", "description": "d", "team": "", "class_map_text": "Walk\nRun\nJump"},
    )
    assert response.status_code == 302
    classifier = Classifier.objects.get(code=code)
    assert (classifier.name, classifier.class_labels) == ("Renamed", ["Walk", "Run", "Jump"])
    assert AuditEvent.objects.filter(action="classifier.updated").count() == 1
    bad = client.post(
        f"/classifiers/{code}/",
        data={"name": "Renamed", "class_map_text": "7: Nope"},
    )
    assert bad.status_code == 400 and "class 7" in html.unescape(bad.text)
    assert client.post(f"/classifiers/{code}/delete/").status_code == 302
    assert not Classifier.objects.exists()
    assert media_files(private_media_root) == []
    assert AuditEvent.objects.filter(action="classifier.deleted").count() == 1


# --------------------------------------------------------------------------- engine client
def test_engine_child_gets_no_secrets_and_runs_in_a_temp_dir(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyses.worker import engine_client

    monkeypatch.setenv("SECRET_KEY", "super-secret")
    monkeypatch.setenv("DATABASE_URL", "postgres://user:pw@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    monkeypatch.setenv("GRADCAM_FFMPEG_THREADS", "1")
    environment = engine_client.child_environment()
    assert "SECRET_KEY" not in environment and "DATABASE_URL" not in environment
    assert "AWS_SECRET_ACCESS_KEY" not in environment
    assert environment["GRADCAM_FFMPEG_THREADS"] == "1"

    # A stand-in engine that reports what it sees proves what a real child receives.
    script = tmp_path / "report_env.sh"
    script.write_text(
        "#!/bin/sh\n"
        'printf \'{"ok": true, "cwd": "%s", "secret": "%s", "db": "%s"}\\n\' "$PWD" "$SECRET_KEY" "$DATABASE_URL"\n'
    )
    script.chmod(0o755)
    settings.GRADCAM_ENGINE_PYTHON = str(script)
    result = engine_client.run_engine(command="inspect", arguments=[], timeout_seconds=10, what="Testing")
    assert result["secret"] == "" and result["db"] == ""
    assert "gradcam-engine-" in result["cwd"] and not Path(result["cwd"]).exists()


def test_engine_timeout_kills_the_whole_process_group_and_says_so(settings: Any, tmp_path: Path) -> None:
    import os
    import time
    import uuid

    from analyses.worker import engine_client

    # A grandchild with a command line of its own, looked for in the process table afterwards
    # (a marker file would prove nothing: the sandboxed child cannot write into tmp_path).
    seconds = f"59.{uuid.uuid4().int % 10**9:09d}"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\nsleep {seconds} &\nsleep 60\n")
    script.chmod(0o755)
    settings.GRADCAM_ENGINE_PYTHON = str(script)

    def grandchildren() -> list[str]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{seconds}\0".encode():
                    found.append(pid)
            except OSError:
                pass
        return found

    with pytest.raises(engine_client.EngineFailure, match="longer than 1 seconds"):
        engine_client.run_engine(command="probe", arguments=[], timeout_seconds=1, what="Reading the video")
    time.sleep(0.5)
    assert grandchildren() == []


def test_engine_crash_becomes_a_user_facing_failure_not_a_traceback(settings: Any, tmp_path: Path) -> None:
    from analyses.worker import engine_client

    script = tmp_path / "crash.sh"
    script.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 1\n")
    script.chmod(0o755)
    settings.GRADCAM_ENGINE_PYTHON = str(script)
    with pytest.raises(engine_client.EngineFailure) as failure:
        engine_client.inspect_model_file(tmp_path / "x.h5")
    assert str(failure.value) == "Inspecting the model failed: the engine reported an internal error."
    assert "boom" in failure.value.details


def test_exit_status_2_without_a_refusal_line_is_a_failure_not_a_refusal(
    settings: Any, tmp_path: Path
) -> None:
    from analyses.worker import engine_client

    # What argparse does on a bad command line: usage on stderr, exit 2, nothing on stdout.
    script = tmp_path / "usage.sh"
    script.write_text(
        "#!/bin/sh\necho 'usage: gradcam3d probe [-h] video' >&2\n"
        "echo 'gradcam3d probe: error: unrecognized arguments: --bogus' >&2\nexit 2\n"
    )
    script.chmod(0o755)
    settings.GRADCAM_ENGINE_PYTHON = str(script)
    with pytest.raises(engine_client.EngineError) as failure:
        engine_client.inspect_model_file(tmp_path / "x.h5")
    assert type(failure.value) is engine_client.EngineFailure
    assert "unrecognized arguments" not in str(failure.value)
    assert "unrecognized arguments" in failure.value.details


# --------------------------------------------------------------------------- upload size, every field
def _field_error(response: Any, field: str) -> str:
    marker = f'data-testid="error-{field}"'
    assert marker in response.text, response.text[:3000]
    return html.unescape(response.text.split(marker, 1)[1].split("</ul>", 1)[0])


def test_oversized_class_map_file_is_refused_while_it_streams_in_not_after(
    web: Any, owner: Any, model_files: dict[str, Path], private_media_root: Path, upload_spy: dict[str, int]
) -> None:
    from analyses.library.forms import CLASS_MAP_MAX_BYTES

    big_map = b"0: Walk\n" * (3 * 1024 * 1024 // 8)  # 3 MB: Django would spool it to a temp file
    with model_files["good_h5"].open("rb") as model:
        response = web(owner).post(
            "/classifiers/",
            data={"name": "Big map"},
            files={
                "file": ("m.h5", model, "application/octet-stream"),
                "class_map_file": ("ClassMap.txt", big_map, "text/plain"),
            },
        )
    assert response.status_code == 400
    assert "class map file is larger than the limit of 256.0\xa0KB" in _field_error(
        response, "class_map_file"
    )
    # At most one chunk past the limit reached Django's own handlers, not the 3 MB.
    assert upload_spy["class_map_file"] <= CLASS_MAP_MAX_BYTES
    assert Classifier.objects.count() == 0
    assert media_files(private_media_root) == []


def test_file_fields_the_form_does_not_have_are_never_received(
    web: Any, owner: Any, model_files: dict[str, Path], upload_spy: dict[str, int]
) -> None:
    with model_files["good_h5"].open("rb") as model:
        response = web(owner).post(
            "/classifiers/",
            data={"name": "With junk"},
            files={
                "file": ("m.h5", model, "application/octet-stream"),
                "junk": ("junk.bin", b"\0" * (3 * 1024 * 1024), "application/octet-stream"),
            },
        )
    assert response.status_code == 302, response.text[:2000]
    assert upload_spy.get("junk", 0) == 0
    assert upload_spy["file"] == model_files["good_h5"].stat().st_size


def test_upload_limit_refuses_every_file_part_when_content_length_is_over_the_limit(
    settings: Any,
) -> None:
    from django.core.files.uploadhandler import SkipFile

    from analyses.library.views import UploadLimitHandler

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    handler = UploadLimitHandler(None, file_limits={"file": 10_000, "class_map_file": 1_000}, kind="model")
    handler.handle_raw_input(None, {}, 10_000_000, b"boundary", "utf-8")
    with pytest.raises(SkipFile):
        handler.new_file("file", "m.h5", "application/octet-stream", None)
    assert handler.refusal_field == "file"
    assert handler.refusal == "The upload is larger than the limit of 10.7\xa0KB for a model file."
    # A body within the limits is received as usual.
    handler = UploadLimitHandler(None, file_limits={"file": 10_000}, kind="model")
    handler.handle_raw_input(None, {}, 9_000, b"boundary", "utf-8")
    handler.new_file("file", "m.h5", "application/octet-stream", None)
    assert handler.receive_data_chunk(b"x" * 9_000, 0) == b"x" * 9_000
    assert handler.refusal is None


@pytest.mark.parametrize(("text", "num_classes", "expected"), CLASS_MAP_CASES)
def test_the_page_reads_class_maps_as_the_engine_does(
    text: str, num_classes: int, expected: list[str] | str
) -> None:
    """The same table runs through the engine's `--labels` parser (tests/engine/test_classmap.py)."""
    if isinstance(expected, str):
        with pytest.raises(InvalidClassMap) as refused:
            parse_class_map(text=text, num_classes=num_classes)
        assert expected in str(refused.value)
    else:
        assert parse_class_map(text=text, num_classes=num_classes) == expected
