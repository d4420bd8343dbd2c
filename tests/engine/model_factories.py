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
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def sequential_with_input(
    *, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE, num_classes: int = NUM_CLASSES, seed: int = 0
) -> Any:
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


def sequential_without_input(
    *, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE, num_classes: int = NUM_CLASSES, seed: int = 0
) -> Any:
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


def functional_bn_residual(
    *, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE, num_classes: int = NUM_CLASSES, seed: int = 0
) -> Any:
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


def nested_submodel(
    *, input_shape: tuple[int, ...] = SMALL_INPUT_SHAPE, num_classes: int = NUM_CLASSES, seed: int = 0
) -> Any:
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
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                    rng.normal(0, 0.1, beta.shape).astype("float32"),
                    rng.normal(0, 0.1, mean.shape).astype("float32"),
                    rng.uniform(0.5, 1.5, variance.shape).astype("float32"),
                ]
            )


# name -> (builder, Conv3D paths the model must report, input shape [T, H, W, C], classes)
GOOD_ARCHITECTURES: dict[str, tuple[Callable[..., Any], list[str], list[int], int]] = {
    "sequential_with_input": (
        sequential_with_input,
        ["seq_with_input/conv3d_1", "seq_with_input/conv3d_2"],
        [8, 32, 32, 3],
        3,
    ),
    "sequential_without_input": (
        sequential_without_input,
        ["seq_no_input/conv3d_1", "seq_no_input/conv3d_2"],
        [8, 32, 32, 3],
        3,
    ),
    "functional_bn_residual": (
        functional_bn_residual,
        ["functional_bn_res/stem_conv3d", "functional_bn_res/res_conv3d"],
        [8, 32, 32, 3],
        3,
    ),
    "nested_submodel": (
        nested_submodel,
        ["outer_model/inner_block/conv3d_1", "outer_model/inner_block/conv3d_2", "outer_model/conv3d_3"],
        [8, 32, 32, 3],
        3,
    ),
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
        __import__("pathlib").Path(marker_text).write_text("the lambda ran"),
        tensor,
    )[1]

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
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(4, 3),
            layers.GlobalAveragePooling2D(),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="image_2d",
    )
    return save_model(model, directory=directory, fmt=fmt)


def conv3d_model_with_input_shape(
    *, input_shape: tuple[int | None, ...], num_classes: int = NUM_CLASSES, final_activation: str = "softmax"
) -> Any:
    """Smallest Conv3D classifier with any declared input shape (weights do not depend on it)."""
    keras = _seeded(0)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv3D(2, 1, name="conv3d_1"),
            layers.GlobalAveragePooling3D(),
            layers.Dense(num_classes, activation=final_activation, name="scores"),
        ],
        name="odd_shape",
    )


def write_absurd_input_model(
    *, directory: Path, input_shape: tuple[int | None, ...] = (4096, 32, 32, 3), fmt: str = "h5"
) -> Path:
    model = conv3d_model_with_input_shape(input_shape=input_shape)
    return save_model(model, directory=directory, fmt=fmt, name="absurd_input")


def write_no_conv3d_model(*, directory: Path, fmt: str = "h5") -> Path:
    keras = _seeded(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=SMALL_INPUT_SHAPE),
            layers.MaxPooling3D(2),
            layers.Flatten(),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
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


# --------------------------------------------------------------------------------------------
# Hostile containers: zip directories, HDF5 attributes, links and storage


def write_zip_with_huge_directory(
    *, directory: Path, entries: int = 200_000, honest_count: bool = True
) -> Path:
    """A ~17 MB .keras zip whose central directory lists `entries` entries (one tiny member).

    Every directory record names its own entry but points at the same stored config.json, so
    the file is small to write and zipfile accepts the directory. With `honest_count` the end
    records (ZIP64 ones included) declare the count; otherwise the classic end record claims 3
    entries while the directory still holds them all: zipfile parses the directory by its byte
    size, not by the declared count.
    """
    import zlib

    payload = b"{}"
    crc = zlib.crc32(payload)
    local = (
        struct.pack(
            "<4s5H3L2H",
            b"PK\x03\x04",
            20,
            0,
            0,
            0,
            0x21,
            crc,
            len(payload),
            len(payload),
            len(b"config.json"),
            0,
        )
        + b"config.json"
        + payload
    )
    records = []
    for index in range(entries):
        name = f"assets/{index:032d}".encode()
        records.append(
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                0,
                0,
                0x21,
                crc,
                len(payload),
                len(payload),
                len(name),
                0,
                0,
                0,
                0,
                0,
                0,
            )
            + name
        )
    central = b"".join(records)
    end = b""
    declared = entries if honest_count else 3
    if honest_count and entries > 0xFFFF:
        zip64_at = len(local) + len(central)
        end += struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, len(central), len(local)
        )
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
        declared = 0xFFFF
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, declared, declared, len(central), len(local), 0)
    path = Path(directory) / ("huge_directory.keras" if honest_count else "lying_directory.keras")
    path.write_bytes(local + central + end)
    return path


def write_h5_with_huge_config(
    *, directory: Path, config_bytes: int = 64 * 1024**2, variable_length: bool = True
) -> Path:
    """An .h5 whose model_config attribute really holds `config_bytes` bytes of JSON.

    Keras and h5py store a bytes attribute as a variable-length string; a fixed-length one that
    large needs HDF5's dense attribute storage (libver="latest").
    """
    import h5py
    import numpy as np

    config = b"{" + b" " * (config_bytes - 2) + b"}"
    kind = "vlen" if variable_length else "fixed"
    path = Path(directory) / f"huge_{kind}_config.h5"
    with h5py.File(path, "w", libver="earliest" if variable_length else "latest") as handle:
        handle.attrs["model_config"] = config if variable_length else np.bytes_(config)
        handle.create_group("model_weights")
    return path


def write_h5_with_lying_attribute_length(
    *,
    directory: Path,
    claimed_bytes: int,
    source: Path | None = None,
    owner: str = "/",
    name: str = "model_config",
) -> Path:
    """An .h5 whose variable-length attribute `name` on `owner` claims `claimed_bytes` bytes.

    A copy of `source` (a saved .h5 model), or a ~6 KB file with only that attribute and a
    model_weights group. The attribute's descriptor (length, global-heap address, index) is
    patched in place: libhdf5 allocates and zero-fills the claimed length before it reads it.
    """
    import shutil

    import h5py

    true_length = 2027  # distinctive, to find the descriptor among the file's bytes
    path = Path(directory) / f"lying_{name}_length.h5"
    if source is not None:
        shutil.copyfile(source, path)
    with h5py.File(path, "r+" if source is not None else "w") as handle:
        if "model_weights" not in handle:
            handle.create_group("model_weights")
        attributes = handle[owner].attrs
        if name in attributes:
            del attributes[name]
        attributes[name] = b"{" + b" " * (true_length - 2) + b"}"
    data = bytearray(path.read_bytes())
    length_field = struct.pack("<I", true_length)
    position = data.find(length_field)
    while position >= 0:
        heap_address = struct.unpack_from("<Q", data, position + 4)[0]
        if data[heap_address : heap_address + 4] == b"GCOL":
            struct.pack_into("<I", data, position, claimed_bytes)
            path.write_bytes(bytes(data))
            return path
        position = data.find(length_field, position + 1)
    raise AssertionError("the attribute's variable-length descriptor was not found")


def write_secret_files(*, directory: Path) -> dict[str, Path]:
    """Host files an attacker would like a model to read: raw bytes and an HDF5 file."""
    import h5py
    import numpy as np

    raw = Path(directory) / "host_secret.bin"
    raw.write_bytes(np.arange(1000, 1000 + 4096, dtype="<f4").tobytes())
    hdf5 = Path(directory) / "host_secret.h5"
    with h5py.File(hdf5, "w") as handle:
        handle["secret"] = np.full((4096,), 1234.5, dtype="<f4")
    return {"raw": raw, "hdf5": hdf5}


def _replace_first_kernel(handle: Any, *, make: Callable[[Any, str, Any], None]) -> str:
    """Replace the first weight dataset named like a kernel with make(group, name, old)."""
    names: list[str] = []
    handle.visit(lambda name: names.append(name) if name.split("/")[-1] in ("kernel", "0") else None)
    import h5py

    target = next(name for name in names if isinstance(handle[name], h5py.Dataset))
    group_name, leaf = target.rsplit("/", 1)
    group = handle[group_name]
    old = group[leaf]
    shape, dtype = old.shape, old.dtype
    del group[leaf]
    make(group, leaf, (shape, dtype))
    return target


def hostile_h5_edit(*, kind: str, secrets: dict[str, Path]) -> Callable[[Any], str]:
    """An edit (applied to an open h5py.File) that makes a weight read a host file.

    kind: "external_link" (the weight is an HDF5 external link to another file),
    "external_storage" (its raw data lives in a host file), "virtual" (a virtual dataset mapping
    another HDF5 file), "soft_link" (a soft link, here to the external link).
    """
    import h5py

    def external_link(group: Any, name: str, old: Any) -> None:
        group[name] = h5py.ExternalLink(str(secrets["hdf5"]), "/secret")

    def external_storage(group: Any, name: str, old: Any) -> None:
        shape, dtype = old
        count = 1
        for size in shape:
            count *= size
        group.create_dataset(name, shape=shape, dtype="<f4", external=[(str(secrets["raw"]), 0, 4 * count)])

    def virtual(group: Any, name: str, old: Any) -> None:
        shape, _ = old
        count = 1
        for size in shape:
            count *= size
        layout = h5py.VirtualLayout(shape=(count,), dtype="<f4")
        layout[:] = h5py.VirtualSource(str(secrets["hdf5"]), "secret", shape=(4096,))[:count]
        group.create_virtual_dataset(name, layout)

    def soft_link(group: Any, name: str, old: Any) -> None:
        group[name + "_target"] = h5py.ExternalLink(str(secrets["hdf5"]), "/secret")
        group[name] = h5py.SoftLink(f"{group.name}/{name}_target")

    makers = {
        "external_link": external_link,
        "external_storage": external_storage,
        "virtual": virtual,
        "soft_link": soft_link,
    }
    return lambda handle: _replace_first_kernel(handle, make=makers[kind])


def write_model_with_hostile_weights(
    *,
    source: Path,
    directory: Path,
    kind: str,
    secrets: dict[str, Path],
    compression: int = zipfile.ZIP_STORED,
) -> Path:
    """A copy of a saved .h5 or .keras model whose first kernel reads a host file (see hostile_h5_edit).

    `compression` applies to the .keras zip (Keras itself stores entries uncompressed).
    """
    import io
    import shutil

    import h5py

    edit = hostile_h5_edit(kind=kind, secrets=secrets)
    target = Path(directory) / f"{kind}{Path(source).suffix}"
    if Path(source).suffix == ".h5":
        shutil.copyfile(source, target)
        with h5py.File(target, "r+") as handle:
            edit(handle)
        return target
    with zipfile.ZipFile(source) as original:
        weights = io.BytesIO(original.read("model.weights.h5"))
        with h5py.File(weights, "r+") as handle:
            edit(handle)
        with zipfile.ZipFile(target, "w", compression=compression) as copy:
            for info in original.infolist():
                data = weights.getvalue() if info.filename == "model.weights.h5" else original.read(info)
                copy.writestr(info.filename, data)
    return target


def conv3d_classifier_after(
    *preprocessing: Any,
    functional: bool = False,
    input_shape: tuple[int, ...] = (4, 8, 8, 3),
    name: str = "preprocessed",
) -> Any:
    """Smallest Conv3D classifier whose input first goes through the `preprocessing` layers."""
    keras = _seeded(0)
    layers = keras.layers
    head = [
        layers.Conv3D(2, 1, name="conv3d_1"),
        layers.GlobalAveragePooling3D(),
        layers.Dense(NUM_CLASSES, activation="softmax", name="scores"),
    ]
    if not functional:
        return keras.Sequential([keras.Input(shape=input_shape), *preprocessing, *head], name=name)
    inputs = keras.Input(shape=input_shape, name="clip")
    features = inputs
    for layer in (*preprocessing, *head):
        features = layer(features)
    return keras.Model(inputs, features, name=name)
