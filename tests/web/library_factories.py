"""Small real models and videos for the library tests, built once per test session.

Models are built with Keras in the TEST process (never in the web process); videos with the
FFmpeg binary from imageio-ffmpeg. Everything is tiny so the whole module costs seconds.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadhandler import FileUploadHandler

from tests.jobs import run_queued_tasks

MODEL_SHAPE = (4, 16, 16, 3)
MODEL_CLASSES = 3


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def media_files(media_root: Path) -> list[Path]:
    """Every file under MEDIA_ROOT (the tmp folder included): refusals must leave none."""
    if not media_root.exists():
        return []
    return sorted(path for path in media_root.rglob("*") if path.is_file())


@pytest.fixture(autouse=True)
def private_media_root(settings: Any, tmp_path: Path) -> Path:
    """Each test gets its own MEDIA_ROOT, so "nothing was stored" can be checked exactly."""
    media_root = tmp_path / "media"
    media_root.mkdir()
    settings.MEDIA_ROOT = media_root
    return media_root


# --------------------------------------------------------------------------- models
def _keras() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def _conv3d_model(*, seed_units: int = 4) -> Any:
    keras = _keras()
    inputs = keras.Input(shape=MODEL_SHAPE)
    features = keras.layers.Conv3D(seed_units, 3, padding="same", activation="relu", name="conv3d_a")(inputs)
    features = keras.layers.Conv3D(4, 3, padding="same", activation="relu", name="conv3d_b")(features)
    pooled = keras.layers.GlobalAveragePooling3D()(features)
    outputs = keras.layers.Dense(MODEL_CLASSES, activation="softmax", name="scores")(pooled)
    return keras.Model(inputs, outputs, name="tiny_c3d")


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of each model variant (good and bad)."""
    keras = _keras()
    folder = tmp_path_factory.mktemp("models")
    files: dict[str, Path] = {}

    files["good_h5"] = folder / "tiny_c3d.h5"
    _conv3d_model().save(files["good_h5"])
    files["other_h5"] = folder / "other_c3d.h5"
    _conv3d_model(seed_units=6).save(files["other_h5"])
    files["good_keras"] = folder / "tiny_c3d.keras"
    _conv3d_model().save(files["good_keras"])

    files["empty"] = folder / "empty.h5"
    files["empty"].write_bytes(b"")
    files["truncated"] = folder / "truncated.h5"
    files["truncated"].write_bytes(files["good_h5"].read_bytes()[: files["good_h5"].stat().st_size // 2])
    files["not_keras"] = folder / "notes.h5"
    files["not_keras"].write_text("These are my notes, not a model.\n" * 20)

    files["weights_only"] = folder / "tiny.weights.h5"
    _conv3d_model().save_weights(files["weights_only"])

    inputs = keras.Input(shape=MODEL_SHAPE)
    outputs = keras.layers.Dense(MODEL_CLASSES, activation="softmax")(keras.layers.Flatten()(inputs))
    files["no_conv3d"] = folder / "dense_only.h5"
    keras.Model(inputs, outputs).save(files["no_conv3d"])

    inputs = keras.Input(shape=(16, 16, 3))
    features = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(MODEL_CLASSES, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(features)
    )
    files["input_2d"] = folder / "image_model.h5"
    keras.Model(inputs, outputs).save(files["input_2d"])

    inputs = keras.Input(shape=(100_000, 4096, 4096, 3))
    features = keras.layers.Conv3D(2, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(MODEL_CLASSES, activation="softmax")(
        keras.layers.GlobalMaxPooling3D()(features)
    )
    files["absurd_shape"] = folder / "huge_input.h5"
    keras.Model(inputs, outputs).save(files["absurd_shape"])

    # A Lambda whose code writes a marker file when it runs. Building the model runs it here
    # once (in the test process); the marker is removed before the upload, so if it ever
    # reappears, the server side executed the uploaded code.
    marker = folder / "lambda_ran.marker"
    marker_path = str(marker)

    def leave_marker(tensor: Any) -> Any:
        with open(marker_path, "w") as handle:
            handle.write("executed")
        return tensor

    inputs = keras.Input(shape=MODEL_SHAPE)
    features = keras.layers.Conv3D(2, 3, padding="same")(inputs)
    features = keras.layers.Lambda(leave_marker, name="sneaky_lambda")(features)
    outputs = keras.layers.Dense(MODEL_CLASSES, activation="softmax")(
        keras.layers.GlobalAveragePooling3D()(features)
    )
    files["lambda"] = folder / "with_lambda.h5"
    keras.Model(inputs, outputs).save(files["lambda"])
    if marker.exists():
        marker.unlink()
    files["lambda_marker"] = marker

    @keras.saving.register_keras_serializable(package="LabInternal")
    class ScaleByTwo(keras.layers.Layer):
        def call(self, tensor: Any) -> Any:
            return tensor * 2.0

    inputs = keras.Input(shape=MODEL_SHAPE)
    features = keras.layers.Conv3D(2, 3, padding="same")(inputs)
    features = ScaleByTwo(name="scale_by_two")(features)
    outputs = keras.layers.Dense(MODEL_CLASSES, activation="softmax")(
        keras.layers.GlobalAveragePooling3D()(features)
    )
    files["custom_object"] = folder / "custom_layer.h5"
    keras.Model(inputs, outputs).save(files["custom_object"])
    return files


# --------------------------------------------------------------------------- videos
def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def video_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    files: dict[str, Path] = {}
    # 2 s of a moving test pattern at 10 fps, MPEG-4 part 2 in AVI: not browser-playable as
    # it is, so the rendition really has to be made.
    files["avi"] = folder / "clip.avi"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=96x64:rate=10", "-t", "2", "-c:v", "mpeg4", files["avi"].as_posix()
    )
    files["mp4"] = folder / "clip.mp4"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=8",
        "-t",
        "1.5",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        files["mp4"].as_posix(),
    )
    files["text_as_mp4"] = folder / "holiday.mp4"
    files["text_as_mp4"].write_text("This is a text file, not a video.\n" * 50)
    files["audio_only"] = folder / "song.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", files["audio_only"].as_posix()
    )
    files["empty"] = folder / "empty.mp4"
    files["empty"].write_bytes(b"")
    return files


def _upload(client: Any, url: str, path: Path, *, process: bool, fields: dict[str, Any]) -> Any:
    """POST the upload form; with `process` (the default), then run the worker job it queued
    (inspection / transcoding), as the worker cluster would, before returning the response."""
    with path.open("rb") as handle:
        response = client.post(
            url,
            data={"name": fields.pop("name", path.stem), **fields},
            files={"file": (path.name, handle, "application/octet-stream")},
        )
    if process:
        run_queued_tasks()
    return response


def upload_model(client: Any, path: Path, *, process: bool = True, **fields: Any) -> Any:
    return _upload(client, "/classifiers/", path, process=process, fields=fields)


def upload_video(client: Any, path: Path, *, process: bool = True, **fields: Any) -> Any:
    return _upload(client, "/videos/", path, process=process, fields=fields)


def code_from_location(response: Any, *, prefix: str) -> str:
    location = response.headers["Location"]
    assert location.startswith(prefix), location
    return location[len(prefix) :].strip("/").split("/")[0]


# --------------------------------------------------------------------------- upload spy
class ByteSpyHandler(FileUploadHandler):
    """An upload handler that runs right after the view's limit handler (list it first in
    FILE_UPLOAD_HANDLERS): `received[field]` counts the bytes that got past the limit, i.e.
    that Django's own handlers would have put in memory or written to a temp file."""

    received: dict[str, int] = {}

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        self.spied_field = field_name
        ByteSpyHandler.received.setdefault(field_name, 0)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        ByteSpyHandler.received[self.spied_field] += len(raw_data)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


@pytest.fixture
def upload_spy(settings: Any) -> dict[str, int]:
    ByteSpyHandler.received = {}
    settings.FILE_UPLOAD_HANDLERS = [
        "tests.web.library_factories.ByteSpyHandler",
        "django.core.files.uploadhandler.MemoryFileUploadHandler",
        "django.core.files.uploadhandler.TemporaryFileUploadHandler",
    ]
    return ByteSpyHandler.received
