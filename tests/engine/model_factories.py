"""Tiny real Keras models and deliberately bad model files, built for engine tests.

Good architectures (each a function returning an unsaved, built, deterministic keras.Model):
sequential_with_input, sequential_without_input, functional_bn_residual, nested_submodel,
grayscale. Save any of them with `save_model(model, directory=..., fmt="h5"|"keras")`.
`GOOD_ARCHITECTURES` maps names to (builder, expected conv3d paths, expected input shape).

Bad files: write_* functions, each writing one file into `directory` and returning its path.
Keras and TensorFlow are imported lazily so importing this module stays cheap.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Before any TensorFlow import: see gradcam3d/loading.py (oneDNN gives wrong graph gradients).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

SMALL_INPUT_SHAPE = (8, 32, 32, 3)
GRAYSCALE_INPUT_SHAPE = (8, 64, 64, 1)
NUM_CLASSES = 3


def _keras() -> Any:
    import keras

    return keras


def _seeded(seed: int) -> Any:
    keras = _keras()
    keras.utils.set_random_seed(seed)
    return keras


# --------------------------------------------------------------------------------------------
# Good architectures


def sequential_with_input(*, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE,
                          num_classes: int = NUM_CLASSES, seed: int = 0) -> Any:
    keras = _seeded(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv3D(4, 3, padding="same", activation="relu", name="conv3d_1"),
            layers.MaxPooling3D(2),
            layers.Conv3D(8, 3, padding="same", activation="relu", name="conv3d_2"),
            layers.GlobalAveragePooling3D(),
            layers.Dropout(0.2),
            layers.Dense(num_classes, activation="softmax", name="scores"),
        ],
        name="seq_with_input",
    )


def sequential_without_input(*, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE,
                             num_classes: int = NUM_CLASSES, seed: int = 0) -> Any:
    """A Sequential with no keras.Input, built by calling it on data (the tricky case)."""
    import numpy as np

    keras = _seeded(seed)
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Conv3D(4, 3, padding="same", activation="relu", name="conv3d_1"),
            layers.Conv3D(6, 3, strides=2, padding="same", activation="relu", name="conv3d_2"),
            layers.GlobalAveragePooling3D(),
            layers.Dense(num_classes, activation="softmax", name="scores"),
        ],
        name="seq_no_input",
    )
    model(np.zeros((1, *input_shape), dtype="float32"))
    return model


def functional_bn_residual(*, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE,
                           num_classes: int = NUM_CLASSES, seed: int = 0) -> Any:
    """Functional model with BatchNorm and a residual add; the softmax is a separate layer."""
    keras = _seeded(seed)
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="clip")
    stem = layers.Conv3D(6, 3, padding="same", name="stem_conv3d")(inputs)
    stem = layers.BatchNormalization(name="stem_bn")(stem)
    stem = layers.ReLU()(stem)
    branch = layers.Conv3D(6, 3, padding="same", name="res_conv3d")(stem)
    branch = layers.BatchNormalization(name="res_bn")(branch)
    merged = layers.Activation("relu")(layers.Add(name="residual_add")([stem, branch]))
    pooled = layers.GlobalAveragePooling3D()(merged)
    scores = layers.Dense(num_classes, name="scores")(pooled)
    outputs = layers.Softmax(name="probabilities")(scores)
    model = keras.Model(inputs, outputs, name="functional_bn_res")
    _randomise_batchnorm_statistics(model, seed=seed)
    return model


def nested_submodel(*, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE,
                    num_classes: int = NUM_CLASSES, seed: int = 0) -> Any:
    """Conv3D layers inside an inner Functional model, which is inside the outer model."""
    keras = _seeded(seed)
    layers = keras.layers
    inner_inputs = keras.Input(shape=input_shape)
    inner = layers.Conv3D(4, 3, padding="same", activation="relu", name="conv3d_1")(inner_inputs)
    inner = layers.Conv3D(4, 3, padding="same", activation="relu", name="conv3d_2")(inner)
    inner_block = keras.Model(inner_inputs, inner, name="inner_block")
    inputs = keras.Input(shape=input_shape, name="clip")
    features = inner_block(inputs)
    features = layers.MaxPooling3D(2)(features)
    features = layers.Conv3D(8, 3, padding="same", activation="relu", name="conv3d_3")(features)
    pooled = layers.GlobalAveragePooling3D()(features)
    outputs = layers.Dense(num_classes, activation="softmax", name="scores")(pooled)
    return keras.Model(inputs, outputs, name="outer_model")


def grayscale(*, num_classes: int = 4, seed: int = 0) -> Any:
    return sequential_with_input(input_shape=GRAYSCALE_INPUT_SHAPE, num_classes=num_classes, seed=seed)


def _randomise_batchnorm_statistics(model: Any, *, seed: int) -> None:
    # Fresh BatchNorm layers are the identity at inference; give them real statistics so a
    # probe that skipped or mis-ran them would be caught.
    import numpy as np

    keras = _keras()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.1, beta.shape).astype("float32"),
                rng.normal(0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
            ])


# name -> (builder, Conv3D paths the model must report, input shape [T, H, W, C], classes)
GOOD_ARCHITECTURES: dict[str, tuple[Callable[..., Any], list[str], list[int], int]] = {
    "sequential_with_input": (
        sequential_with_input, ["seq_with_input/conv3d_1", "seq_with_input/conv3d_2"], [8, 32, 32, 3], 3),
    "sequential_without_input": (
        sequential_without_input, ["seq_no_input/conv3d_1", "seq_no_input/conv3d_2"], [8, 32, 32, 3], 3),
    "functional_bn_residual": (
        functional_bn_residual, ["functional_bn_res/stem_conv3d", "functional_bn_res/res_conv3d"],
        [8, 32, 32, 3], 3),
    "nested_submodel": (
        nested_submodel,
        ["outer_model/inner_block/conv3d_1", "outer_model/inner_block/conv3d_2", "outer_model/conv3d_3"],
        [8, 32, 32, 3], 3),
    "grayscale": (grayscale, ["seq_with_input/conv3d_1", "seq_with_input/conv3d_2"], [8, 64, 64, 1], 4),
}


def save_model(model: Any, *, directory: Path, fmt: str, name: str | None = None) -> Path:
    """Save with model.save as `<name>.h5` or `<name>.keras`; returns the path."""
    if fmt not in ("h5", "keras"):
        raise ValueError(f"fmt must be 'h5' or 'keras', not {fmt!r}")
    path = Path(directory) / f"{name or model.name}.{fmt}"
    model.save(path)
    return path


# --------------------------------------------------------------------------------------------
# Bad models built with Keras


def write_lambda_model(*, directory: Path, marker: Path, fmt: str = "h5") -> Path:
    """A model whose Lambda body writes `marker` when it runs.

    Building the model runs the Lambda once, so the marker is deleted after saving; a test
    then proves it never reappears.
    """
    keras = _seeded(0)
    layers = keras.layers
    marker_text = str(marker)

    # A real lambda (not a named function): Keras stores its bytecode and closure (the marker
    # path) in the config, which is what makes Lambda layers dangerous to load.
    leave_marker = lambda tensor: (  # noqa: E731
        __import__("pathlib").Path(marker_text).write_text("the lambda ran"), tensor)[1]

    inputs = keras.Input(shape=SMALL_INPUT_SHAPE)
    features = layers.Conv3D(2, 3, padding="same", name="conv3d_1")(inputs)
    features = layers.Lambda(leave_marker, name="evil_lambda")(features)
    pooled = layers.GlobalAveragePooling3D()(features)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(pooled)
    model = keras.Model(inputs, outputs, name="lambda_model")
    path = save_model(model, directory=directory, fmt=fmt)
    Path(marker).unlink(missing_ok=True)
    return path


def _custom_layer_class() -> type:
    keras = _keras()

    @keras.saving.register_keras_serializable(package="UntrustedPackage", name="DoubleIt")
    class DoubleIt(keras.layers.Layer):
        def call(self, inputs: Any) -> Any:
            return inputs * 2.0

    return DoubleIt


def write_custom_layer_model(*, directory: Path, fmt: str = "keras") -> Path:
    """A model with a custom registered layer, inside a nested sub-model (deep in the config)."""
    keras = _seeded(0)
    layers = keras.layers
    double_it = _custom_layer_class()
    inner_inputs = keras.Input(shape=SMALL_INPUT_SHAPE)
    inner = double_it(name="double_it")(layers.Conv3D(2, 3, padding="same", name="conv3d_1")(inner_inputs))
    inner_block = keras.Model(inner_inputs, inner, name="inner_block")
    inputs = keras.Input(shape=SMALL_INPUT_SHAPE)
    pooled = layers.GlobalAveragePooling3D()(inner_block(inputs))
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(pooled)
    model = keras.Model(inputs, outputs, name="custom_model")
    return save_model(model, directory=directory, fmt=fmt)


def write_image_2d_model(*, directory: Path, fmt: str = "h5") -> Path:
    keras = _seeded(0)
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input(shape=(32, 32, 3)), layers.Conv2D(4, 3), layers.GlobalAveragePooling2D(),
         layers.Dense(NUM_CLASSES, activation="softmax")],
        name="image_2d",
    )
    return save_model(model, directory=directory, fmt=fmt)


def conv3d_model_with_input_shape(*, input_shape: tuple[int | None, ...], num_classes: int = NUM_CLASSES,
                                  final_activation: str = "softmax") -> Any:
    """Smallest Conv3D classifier with any declared input shape (weights do not depend on it)."""
    keras = _seeded(0)
    layers = keras.layers
    return keras.Sequential(
        [keras.Input(shape=input_shape), layers.Conv3D(2, 1, name="conv3d_1"),
         layers.GlobalAveragePooling3D(), layers.Dense(num_classes, activation=final_activation, name="scores")],
        name="odd_shape",
    )


def write_absurd_input_model(*, directory: Path, input_shape: tuple[int | None, ...] = (4096, 32, 32, 3),
                             fmt: str = "h5") -> Path:
    model = conv3d_model_with_input_shape(input_shape=input_shape)
    return save_model(model, directory=directory, fmt=fmt, name="absurd_input")


def write_no_conv3d_model(*, directory: Path, fmt: str = "h5") -> Path:
    keras = _seeded(0)
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input(shape=SMALL_INPUT_SHAPE), layers.MaxPooling3D(2), layers.Flatten(),
         layers.Dense(NUM_CLASSES, activation="softmax")],
        name="no_conv3d",
    )
    return save_model(model, directory=directory, fmt=fmt)


def write_single_output_model(*, directory: Path, fmt: str = "h5") -> Path:
    model = conv3d_model_with_input_shape(input_shape=SMALL_INPUT_SHAPE, num_classes=1)
    return save_model(model, directory=directory, fmt=fmt, name="single_output")


def write_weights_only(*, directory: Path) -> Path:
    path = Path(directory) / "model.weights.h5"
    sequential_with_input().save_weights(path)
    return path


# --------------------------------------------------------------------------------------------
# Bad files written byte by byte


def write_zero_byte(*, directory: Path, name: str = "empty.h5") -> Path:
    path = Path(directory) / name
    path.write_bytes(b"")
    return path


def write_truncated(*, source: Path, directory: Path, keep_fraction: float = 0.5) -> Path:
    data = Path(source).read_bytes()
    path = Path(directory) / f"truncated{Path(source).suffix}"
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def write_random_bytes(*, directory: Path, name: str = "random.h5", size: int = 4096, seed: int = 0) -> Path:
    import numpy as np

    path = Path(directory) / name
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_zip_without_config(*, directory: Path) -> Path:
    path = Path(directory) / "no_config.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("model.weights.h5", b"not really weights")
    return path


def write_zip_bomb(*, directory: Path, claimed_bytes: int = 64 * 1024**3) -> Path:
    """A small .keras zip whose central directory claims a huge uncompressed weights entry."""
    path = Path(directory) / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        archive.writestr("model.weights.h5", b"\0" * 1024)
    data = bytearray(path.read_bytes())
    # Patch the central directory entry for model.weights.h5: uncompressed size -> 0xFFFFFFFF,
    # with a ZIP64 extra field holding the claimed size.
    marker = data.rfind(b"PK\x01\x02")
    name_length = struct.unpack_from("<H", data, marker + 28)[0]
    extra = struct.pack("<HHQ", 0x0001, 8, claimed_bytes)
    struct.pack_into("<I", data, marker + 24, 0xFFFFFFFF)
    struct.pack_into("<H", data, marker + 30, len(extra))
    insert_at = marker + 46 + name_length
    data[insert_at:insert_at] = extra
    end_record = data.rfind(b"PK\x05\x06")
    central_size = struct.unpack_from("<I", data, end_record + 12)[0]
    struct.pack_into("<I", data, end_record + 12, central_size + len(extra))
    path.write_bytes(bytes(data))
    return path


def write_zip_with_many_entries(*, directory: Path, entries: int = 5000) -> Path:
    path = Path(directory) / "many_entries.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
        for index in range(entries):
            archive.writestr(f"assets/{index}", b"")
    return path


def write_non_keras_hdf5(*, directory: Path, name: str = "data.h5") -> Path:
    import h5py
    import numpy as np

    path = Path(directory) / name
    with h5py.File(path, "w") as handle:
        handle.create_dataset("measurements", data=np.arange(10.0))
        handle.attrs["instrument"] = "not a model"
    return path


def write_keras_zip_with_config(*, directory: Path, config: Any, name: str = "crafted.keras") -> Path:
    """A .keras zip whose config.json is `config` (for hand-crafted hostile configs)."""
    path = Path(directory) / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("model.weights.h5", b"")
    return path
