"""Inspect an uploaded Keras model file without deserializing it (`python -m gradcam3d inspect`).

Uploaded models are untrusted: a Keras config can name arbitrary Python (Lambda bytecode,
custom classes from any importable module), and its HDF5 weights can point at other files on
the host. This module only *reads* the file with h5py / zipfile / json:

- the containers first, with every cap applied before the expensive read it protects (the zip
  end record before zipfile parses the directory; an HDF5 attribute's stored length before
  libhdf5 allocates it);
- the config JSON (the h5 `model_config` attribute or the `.keras` zip's `config.json`), walked
  object by object, nested sub-models, wrapped layers and compile_configs included, against an
  allowlist of built-in Keras classes; anything else is refused with where it was found;
- the HDF5 weights (the `.h5` file itself or the `.keras` zip's `model.weights.h5`), refused if
  any link, external storage or virtual dataset would make HDF5 read another file;
- the layers the input meets first, to report input rescaling the model does itself.

It never imports TensorFlow or Keras, so the web side can run it in a short-lived child process
that starts fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from gradcam3d.errors import ModelRefused

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"

DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_ZIP_ENTRIES = 64  # a .keras file has 3 (config.json, metadata.json, model.weights.h5)
# A Keras zip directory takes a few hundred bytes; 64 entries with long names fit in this.
MAX_ZIP_DIRECTORY_BYTES = 256 * 1024
MAX_CONFIG_BYTES = 32 * 1024**2
MAX_VERSION_BYTES = 256
MAX_CONFIG_DEPTH = 200
KERAS_WEIGHTS_H5 = "model.weights.h5"

# HDF5 weights: a Keras file has about three links per weight (a few thousand for a large 3D
# network); the walk stops well beyond that so a crafted file cannot keep it busy.
MAX_H5_LINKS = 200_000
# Object headers of Keras files are a few hundred bytes to a few kilobytes, in one or two
# chunks; attributes (layer and weight names, the config's descriptor) are small.
MAX_H5_HEADER_CHUNK_BYTES = 1024**2
MAX_H5_HEADER_CHUNKS = 64
MAX_H5_HEADER_BYTES = 128 * 1024**2
MAX_H5_ATTRIBUTE_BYTES = MAX_CONFIG_BYTES  # the model_config attribute is the largest
MAX_H5_ATTRIBUTES_TOTAL_BYTES = 64 * 1024**2
# Normalization statistics are read from the weights only when this small (one per channel).
MAX_STATISTICS_VALUES = 4096

MAX_FRAMES = 1024
MAX_SIDE = 2048
ALLOWED_CHANNELS = (1, 3)
MAX_INPUT_ELEMENTS = 200_000_000

CONV3D_CLASS_NAMES = frozenset({"Conv3D", "Convolution3D"})
MODEL_CLASS_NAMES = frozenset({"Functional", "Sequential", "Model"})

# Built-in Keras layers a video classifier may reasonably contain. Deliberately absent:
# Lambda (runs serialized Python bytecode), TFSMLayer (loads an external SavedModel),
# TorchModuleWrapper (pickles), JaxLayer/FlaxLayer (wrap foreign callables), and the
# text/lookup preprocessing layers that read vocabulary files from paths in the config.
ALLOWED_LAYER_CLASS_NAMES = frozenset(
    [
        "InputLayer",
        "Activation",
        "ActivityRegularization",
        "Add",
        "Average",
        "Maximum",
        "Minimum",
        "Multiply",
        "Subtract",
        "Concatenate",
        "Dot",
        "Dense",
        "EinsumDense",
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        "Identity",
        "Masking",
        "Dropout",
        "AlphaDropout",
        "GaussianDropout",
        "GaussianNoise",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
        "RMSNormalization",
        "Normalization",
        "Rescaling",
        "Resizing",
        "CenterCrop",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "PReLU",
        "Softmax",
        "Conv1D",
        "Conv2D",
        "Conv3D",
        "Convolution1D",
        "Convolution2D",
        "Convolution3D",
        "Conv1DTranspose",
        "Conv2DTranspose",
        "Conv3DTranspose",
        "Convolution1DTranspose",
        "Convolution2DTranspose",
        "Convolution3DTranspose",
        "DepthwiseConv1D",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "SeparableConv2D",
        "SeparableConvolution1D",
        "SeparableConvolution2D",
        "ConvLSTM1D",
        "ConvLSTM2D",
        "ConvLSTM3D",
        "LSTM",
        "GRU",
        "SimpleRNN",
        "RNN",
        "LSTMCell",
        "GRUCell",
        "SimpleRNNCell",
        "StackedRNNCells",
        "Bidirectional",
        "TimeDistributed",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "AvgPool1D",
        "AvgPool2D",
        "AvgPool3D",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "MaxPool1D",
        "MaxPool2D",
        "MaxPool3D",
        "AdaptiveAveragePooling1D",
        "AdaptiveAveragePooling2D",
        "AdaptiveAveragePooling3D",
        "AdaptiveMaxPooling1D",
        "AdaptiveMaxPooling2D",
        "AdaptiveMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "GlobalAvgPool1D",
        "GlobalAvgPool2D",
        "GlobalAvgPool3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalMaxPool1D",
        "GlobalMaxPool2D",
        "GlobalMaxPool3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "MultiHeadAttention",
        "GroupQueryAttention",
        "Attention",
        "AdditiveAttention",
        "Embedding",
    ]
)

# Non-layer objects that appear inside layer configs: dtype policies, initializers,
# regularizers and constraints (all plain data holders in Keras).
ALLOWED_OBJECT_CLASS_NAMES = frozenset(
    [
        "DTypePolicy",
        "FloatDTypePolicy",
        "Policy",
        "Constant",
        "GlorotNormal",
        "GlorotUniform",
        "HeNormal",
        "HeUniform",
        "Identity",
        "IdentityInitializer",
        "LecunNormal",
        "LecunUniform",
        "Ones",
        "Orthogonal",
        "OrthogonalInitializer",
        "RandomNormal",
        "RandomUniform",
        "TruncatedNormal",
        "VarianceScaling",
        "Zeros",
        "L1",
        "L2",
        "L1L2",
        "OrthogonalRegularizer",
        "MaxNorm",
        "MinMaxNorm",
        "NonNeg",
        "UnitNorm",
    ]
)

# Embedded data markers of Keras serialization that carry only data (no code).
ALLOWED_DATA_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__"})

BUILTIN_ACTIVATIONS = frozenset(
    [
        "celu",
        "elu",
        "exponential",
        "gelu",
        "glu",
        "hard_shrink",
        "hard_sigmoid",
        "hard_silu",
        "hard_swish",
        "hard_tanh",
        "leaky_relu",
        "linear",
        "log_sigmoid",
        "log_softmax",
        "mish",
        "relu",
        "relu6",
        "selu",
        "sigmoid",
        "silu",
        "soft_shrink",
        "softmax",
        "softplus",
        "softsign",
        "sparse_plus",
        "sparse_sigmoid",
        "sparsemax",
        "squareplus",
        "swish",
        "tanh",
        "tanh_shrink",
        "threshold",
    ]
)

REFUSED_LAYER_REASONS = {
    "Lambda": "is a Lambda layer, which runs arbitrary Python code",
    "TFSMLayer": "is a TFSMLayer, which loads an external TensorFlow SavedModel",
    "TorchModuleWrapper": "wraps a PyTorch module, which is restored with pickle",
    "JaxLayer": "wraps a JAX function, which is arbitrary code",
    "FlaxLayer": "wraps a Flax module, which is arbitrary code",
}

# Layers that keep the class dimension unchanged, so the class count is found behind them.
SHAPE_PRESERVING_CLASS_NAMES = frozenset(
    [
        "Dropout",
        "AlphaDropout",
        "GaussianDropout",
        "GaussianNoise",
        "ActivityRegularization",
        "Identity",
        "BatchNormalization",
        "LayerNormalization",
        "UnitNormalization",
        "RMSNormalization",
    ]
)
ACTIVATION_LAYER_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu", "PReLU": "prelu"}

ALLOWED_MODULES = frozenset(
    {
        "keras",
        "keras.layers",
        "keras.models",
        "keras.initializers",
        "keras.regularizers",
        "keras.constraints",
        "keras.activations",
        "keras.dtype_policies",
        "keras.mixed_precision",
    }
)
ALLOWED_MODULE_PREFIXES = (
    "keras.src.layers.",
    "keras.src.models.",
    "keras.src.initializers",
    "keras.src.regularizers",
    "keras.src.constraints",
    "keras.src.activations",
    "keras.src.dtype_policies",
)


# compile_config (training settings) may only hold optimizers, learning-rate schedules,
# losses and metrics from Keras' own modules, and built-in names for them.
TRAINING_MODULES = frozenset(
    {"keras.optimizers", "keras.optimizers.schedules", "keras.losses", "keras.metrics"}
)
TRAINING_MODULE_PREFIXES = ("keras.src.optimizers.", "keras.src.losses.", "keras.src.metrics.")
TRAINING_NAME_KEYS = frozenset({"optimizer", "loss", "metrics", "weighted_metrics"})
BUILTIN_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keys of a serialized object that _check_object validates itself rather than walking.
OBJECT_IDENTITY_KEYS = ("class_name", "module", "registered_name")

# Input preprocessing: layers that leave pixel values on the same scale, which the scan for
# Rescaling/Normalization looks past; any other layer ends the scan.
INPUT_TRANSPARENT_CLASS_NAMES = frozenset(
    [
        "InputLayer",
        "Resizing",
        "CenterCrop",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Reshape",
        "Permute",
        "Identity",
        "Masking",
        "Dropout",
        "AlphaDropout",
        "GaussianDropout",
        "GaussianNoise",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
    ]
)
INPUT_PREPROCESSING_CLASS_NAMES = frozenset({"Rescaling", "Normalization"})
# Rescaling by at most 1/64 (1/255, 1/127.5) means the model expects 0-255 input; a larger
# scale (1, or 2 to map [0, 1] to [-1, 1]) expects values already in [0, 1].
RAW_INPUT_MAX_SCALE = 1 / 64
# A Normalization mean or standard deviation above this was computed on 0-255 pixel values.
RAW_INPUT_MIN_STATISTIC = 2.0


def _refuse(message: str, *, code: str = "model_refused") -> ModelRefused:
    return ModelRefused(message, code=code)


# ---------------------------------------------------------------------------------------------
# Reading the file


def detect_model_format(*, path: Path) -> str:
    """Return "h5" or "keras" from the file's first bytes (never from its name)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise _refuse("The model file is empty (0 bytes).", code="empty")
    if head.startswith(HDF5_MAGIC):
        return "h5"
    if head.startswith(ZIP_MAGIC):
        return "keras"
    raise _refuse(
        "The file is not a Keras model: it is neither an HDF5 (.h5) nor a zip (.keras) file.",
        code="not_a_model",
    )


def _decode_json(*, raw: bytes | str, where: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _refuse(f"The model's {where} is not valid JSON ({exc}).", code="corrupted") from exc


@dataclass
class _OpenedModel:
    """A model file opened for inspection; `container` is the h5py.File or the ZipFile."""

    config: Any
    keras_version: str | None
    container: Any


def _open_model_file(
    *, stack: contextlib.ExitStack, path: Path, model_format: str, max_uncompressed_bytes: int
) -> _OpenedModel:
    """Open the file and read its config with every cap applied; closed with `stack`."""
    if model_format == "h5":
        return _open_h5_model(stack=stack, path=path)
    archive = _open_keras_archive(path=path, max_uncompressed_bytes=max_uncompressed_bytes)
    stack.enter_context(archive)
    config, keras_version = _read_keras_zip_config(archive=archive)
    return _OpenedModel(config=config, keras_version=keras_version, container=archive)


# -- HDF5 (.h5 files and .keras weights) -----------------------------------------------------


def _open_h5_model(*, stack: contextlib.ExitStack, path: Path) -> _OpenedModel:
    import h5py  # local: only this path needs it

    try:
        h5_file = h5py.File(path, "r")
    except OSError as exc:
        raise _refuse(
            f"The HDF5 model file is truncated or corrupted and cannot be read ({exc}).",
            code="corrupted",
        ) from exc
    stack.enter_context(h5_file)
    # Everything is checked before any name is looked up: asking whether a name exists can
    # follow an external link, and looking up an attribute in dense storage reads all of it.
    raw_handle = stack.enter_context(open(path, "rb"))
    _check_h5_container(
        h5_file, raw=_RawReader(handle=raw_handle, base=h5_file.userblock_size), label="The model file"
    )
    try:
        raw = _read_root_string_attribute(h5_file, name="model_config")
        keras_version = _read_root_string_attribute(h5_file, name="keras_version")
        has_weights = "model_weights" in h5_file
        if raw is None:
            _refuse_h5_without_config(h5_file)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise _refuse(f"The HDF5 model file is truncated or corrupted ({exc}).", code="corrupted") from exc
    if not has_weights:
        raise _refuse(
            "The HDF5 model file has an architecture but no weights ('model_weights' group).",
            code="no_weights",
        )
    config = _decode_json(raw=raw, where="configuration (model_config)")
    return _OpenedModel(
        config=config, keras_version=keras_version and keras_version[:MAX_VERSION_BYTES], container=h5_file
    )


def _refuse_h5_without_config(h5_file: Any) -> NoReturn:
    import h5py

    weight_markers = ("model_weights", "layers", "vars", "_layer_checkpoint_dependencies")
    if any(name in h5_file for name in weight_markers) or h5py.h5a.exists(h5_file.id, b"layer_names"):
        raise _refuse(
            "The file holds only weights (no model architecture): save the whole model "
            "with model.save('model.h5') or model.save('model.keras'), not save_weights().",
            code="weights_only",
        )
    raise _refuse(
        "The HDF5 file is not a Keras model: it has no 'model_config' attribute.",
        code="not_a_model",
    )


def _read_root_string_attribute(h5_file: Any, *, name: str) -> str | None:
    """The root group's string attribute `name` (its size was checked with the container)."""
    import h5py

    key = name.encode()
    if not h5py.h5a.exists(h5_file.id, key):
        return None
    attribute = h5py.h5a.open(h5_file.id, key)
    if attribute.shape not in ((), (1,)) or attribute.get_type().get_class() != h5py.h5t.STRING:
        raise _refuse(f"The model file's '{name}' attribute is not one string.", code="corrupted")
    value = h5_file.attrs[name]
    if hasattr(value, "reshape"):  # a one-element array
        value = value.reshape(-1)[0]
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _check_h5_container(h5_file: Any, *, raw: _RawReader, label: str) -> None:
    """Refuse HDF5 content that would make HDF5 read other files or allocate unchecked memory.

    - links (external, soft), external raw storage and virtual datasets: HDF5 follows them to
      other files on this machine, so a model could turn any file the engine can read into
      "weights" (Keras never writes any of them);
    - attributes larger than MAX_H5_ATTRIBUTE_BYTES: libhdf5 allocates an attribute whole
      when it is opened, a variable-length one at the length its descriptor claims, so sizes
      are read from the object headers themselves (see _object_attribute_sizes).
    The walk never follows a link and stops at MAX_H5_LINKS objects.
    """
    import h5py

    state = _H5Walk(h5_file=h5_file, raw=raw, label=label, sizes=h5_file.id.get_create_plist().get_sizes())
    state.check_attributes(h5py.h5o.get_info(h5_file.id).addr, name="/")

    def visit(name: str, link: Any) -> bool | None:
        state.visited += 1
        if state.visited > MAX_H5_LINKS:
            state.refuse(f"{label} has more than {MAX_H5_LINKS:,} HDF5 objects.", code="too_large")
        elif isinstance(link, h5py.ExternalLink):
            state.refuse_external(f"links '{name}' to the external file '{link.filename}'")
        elif isinstance(link, h5py.SoftLink):
            state.refuse_external(f"has a soft link '{name}' (to '{link.path}')")
        elif not isinstance(link, h5py.HardLink):
            state.refuse_external(f"has a link '{name}' of an unknown kind")
        else:
            state.check_object(name)
        return True if state.refusal else None

    if state.refusal is None:
        try:
            h5_file.visititems_links(visit)
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise _refuse(f"{label} has a corrupted HDF5 structure ({exc}).", code="corrupted") from exc
    if state.refusal is not None:
        raise state.refusal


@dataclass
class _H5Walk:
    h5_file: Any
    raw: _RawReader
    label: str
    sizes: tuple[int, int]
    visited: int = 0
    attribute_bytes: int = 0
    refusal: ModelRefused | None = None

    def refuse(self, message: str, *, code: str) -> None:
        self.refusal = self.refusal or _refuse(message, code=code)

    def refuse_external(self, what: str) -> None:
        self.refuse(
            f"{self.label} {what}: a Keras model keeps all of its data inside its own file, and "
            "HDF5 would read other files on this machine, so it is refused.",
            code="external_data",
        )

    def check_object(self, name: str) -> None:
        import h5py

        # The header is parsed from the link's address before libhdf5 opens (and loads) it.
        self.check_attributes(self.h5_file.id.links.get_info(name.encode()).u, name=name)
        if self.refusal is not None:
            return
        object_id = h5py.h5o.open(self.h5_file.id, name.encode())
        if isinstance(object_id, h5py.h5d.DatasetID):
            create_plist = object_id.get_create_plist()
            if create_plist.get_external_count() > 0:
                external = create_plist.get_external(0)[0].decode("utf-8", errors="replace")
                self.refuse_external(f"keeps the data of '{name}' in the external file '{external}'")
            elif create_plist.get_layout() == h5py.h5d.VIRTUAL:
                self.refuse_external(f"has a virtual dataset '{name}' that maps data from other files")

    def check_attributes(self, address: int, *, name: str) -> None:
        try:
            found = _object_attribute_sizes(raw=self.raw, address=address, sizes=self.sizes)
        except (_UncheckableHeader, struct.error, IndexError) as exc:
            self.refuse(
                f"{self.label} stores the attributes of '{name}' in a way Keras never writes ({exc}), "
                "so their size cannot be checked before reading them; re-save the model with Keras.",
                code="corrupted",
            )
            return
        for attribute, size in found:
            self.attribute_bytes += size
            if size > MAX_H5_ATTRIBUTE_BYTES:
                self.refuse(
                    f"{self.label}'s attribute '{attribute}' on '{name}' is {size:,} bytes (at most "
                    f"{MAX_H5_ATTRIBUTE_BYTES:,} accepted): refused before reading it.",
                    code="too_large",
                )
        if self.attribute_bytes > MAX_H5_ATTRIBUTES_TOTAL_BYTES:
            self.refuse(
                f"{self.label}'s attributes add up to more than {MAX_H5_ATTRIBUTES_TOTAL_BYTES:,} "
                "bytes: refused before reading them.",
                code="too_large",
            )


class _UncheckableHeader(Exception):
    """An object header laid out in a way HDF5 writers do not use for Keras files."""


@dataclass
class _RawReader:
    """Reads bytes at HDF5 addresses of one file, within a total budget."""

    handle: Any
    base: int  # file offset of HDF5 address 0 (member start in a zip, plus any user block)
    budget: int = MAX_H5_HEADER_BYTES

    def read(self, address: int, size: int) -> bytes:
        self.budget -= size
        if self.budget < 0:
            raise _UncheckableHeader(f"object headers over {MAX_H5_HEADER_BYTES:,} bytes in all")
        data = os.pread(self.handle.fileno(), size, self.base + address)
        if len(data) != size:
            raise _UncheckableHeader("an object header runs past the end of the file")
        return data


def _object_attribute_sizes(
    *, raw: _RawReader, address: int, sizes: tuple[int, int]
) -> list[tuple[str, int]]:
    """(name, bytes libhdf5 allocates to read it) of each attribute of the object at `address`.

    An attribute's storage size does not bound its read: a variable-length one stores a
    16-byte descriptor (length, global-heap address, index) per element, and libhdf5
    allocates and zero-fills the length found there before reading a byte of the data (a 6 KB
    file can claim 4 GB), with no call to ask for that length first. Attributes in dense
    storage are read whole just to look one up by name. So both are read from the headers.
    """
    found: list[tuple[str, int]] = []
    for message_type, flags, data in _object_header_messages(raw=raw, address=address, sizes=sizes):
        if message_type == 0x15 and _has_dense_attributes(data, offset_size=sizes[0]):
            raise _UncheckableHeader("attributes in dense storage")
        if message_type != 0x0C:
            continue
        if flags & 0x02:
            raise _UncheckableHeader("a shared attribute")
        name, datatype, dataspace, values = _parse_attribute_message(data)
        found.append(
            (name, _attribute_bytes(datatype=datatype, dataspace=dataspace, values=values, sizes=sizes))
        )
    return found


def _object_header_messages(
    *, raw: _RawReader, address: int, sizes: tuple[int, int]
) -> Iterator[tuple[int, int, bytes]]:
    """Yield (type, flags, data) of each message of an HDF5 object header (format v1 or v2)."""
    offset_size, length_size = sizes
    prefix = raw.read(address, 16)
    if prefix[:4] == b"OHDR":
        header_flags, version = prefix[5], 2
        position = 6 + (16 if header_flags & 0x20 else 0) + (4 if header_flags & 0x10 else 0)
        width = 1 << (header_flags & 0x03)
        head = raw.read(address, position + width)
        chunks = [(address + position + width, int.from_bytes(head[position:], "little"), False)]
    elif prefix[0] == 1:
        header_flags, version = 0, 1
        chunks = [(address + 16, struct.unpack_from("<I", prefix, 8)[0], False)]
    else:
        raise _UncheckableHeader(f"object header version {prefix[0]}")
    for _ in range(MAX_H5_HEADER_CHUNKS):
        if not chunks:
            return
        start, size, continuation = chunks.pop(0)
        if size > MAX_H5_HEADER_CHUNK_BYTES:
            raise _UncheckableHeader(f"an object header chunk of {size:,} bytes")
        chunk = raw.read(start, size)
        if version == 2 and continuation:
            if chunk[:4] != b"OCHK":
                raise _UncheckableHeader("a continuation chunk without its signature")
            chunk = chunk[4:-4]  # signature and checksum
        for message_type, flags, data in _chunk_messages(chunk, version=version, header_flags=header_flags):
            if message_type == 0x10:  # continuation: address and length of the next chunk
                chunks.append(
                    (
                        int.from_bytes(data[:offset_size], "little"),
                        int.from_bytes(data[offset_size : offset_size + length_size], "little"),
                        True,
                    )
                )
            yield message_type, flags, data
    raise _UncheckableHeader(f"more than {MAX_H5_HEADER_CHUNKS} object header chunks")


def _chunk_messages(chunk: bytes, *, version: int, header_flags: int) -> Iterator[tuple[int, int, bytes]]:
    position = 0
    if version == 1:  # type (2), size (2), flags (1), reserved (3), data
        while position + 8 <= len(chunk):
            message_type, size, flags = struct.unpack_from("<HHB", chunk, position)
            yield message_type, flags, chunk[position + 8 : position + 8 + size]
            position += 8 + size
        return
    head = 6 if header_flags & 0x04 else 4  # type (1), size (2), flags (1), [creation order (2)]
    while position + head <= len(chunk):
        message_type, size, flags = struct.unpack_from("<BHB", chunk, position)
        yield message_type, flags, chunk[position + head : position + head + size]
        position += head + size


def _has_dense_attributes(data: bytes, *, offset_size: int) -> bool:
    # Attribute info message: version, flags, [max creation index (2)], fractal heap address.
    position = 2 + (2 if data[1] & 0x01 else 0)
    heap_address = int.from_bytes(data[position : position + offset_size], "little")
    return heap_address != (1 << (8 * offset_size)) - 1


def _parse_attribute_message(data: bytes) -> tuple[str, bytes, bytes, bytes]:
    """(name, datatype, dataspace, raw values) of an attribute message (versions 1 to 3)."""
    version = data[0]
    if version not in (1, 2, 3):
        raise _UncheckableHeader(f"attribute message version {version}")
    if version > 1 and data[1] & 0x03:
        raise _UncheckableHeader("a shared datatype or dataspace")
    name_size, type_size, space_size = struct.unpack_from("<HHH", data, 2)
    position = 9 if version == 3 else 8
    fields = []
    for size in (name_size, type_size, space_size):
        fields.append(data[position : position + size])
        position += (size + 7) // 8 * 8 if version == 1 else size  # version 1 pads to 8 bytes
    name = fields[0].split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return name, fields[1], fields[2], data[position:]


def _attribute_bytes(*, datatype: bytes, dataspace: bytes, values: bytes, sizes: tuple[int, int]) -> int:
    count = _dataspace_count(dataspace, length_size=sizes[1])
    type_class = datatype[0] & 0x0F
    if type_class in (6, 10):  # compound, array: may hide variable-length members
        raise _UncheckableHeader("a compound or array attribute")
    if type_class != 9:
        return count * struct.unpack_from("<I", datatype, 4)[0]
    if (datatype[1] & 0x0F) == 1:  # variable-length string of 1-byte characters
        base_size = 1
    elif (datatype[8] & 0x0F) in (6, 9, 10):
        raise _UncheckableHeader("a nested variable-length attribute")
    else:  # variable-length sequence: its base datatype follows the 8-byte header
        base_size = struct.unpack_from("<I", datatype, 12)[0]
    element = 4 + sizes[0] + 4  # length, global heap collection address, object index
    if len(values) < count * element:
        raise _UncheckableHeader("an attribute shorter than its dataspace")
    return base_size * sum(struct.unpack_from("<I", values, i * element)[0] for i in range(count))


def _dataspace_count(space: bytes, *, length_size: int) -> int:
    version, rank = space[0], space[1]
    if version == 1:
        dims_at = 8
    elif version == 2:
        if space[3] == 2:  # null dataspace
            return 0
        dims_at = 4
    else:
        raise _UncheckableHeader(f"dataspace version {version}")
    return math.prod(
        int.from_bytes(space[dims_at + i * length_size : dims_at + (i + 1) * length_size], "little")
        for i in range(rank)
    )


# -- Zip (.keras) -----------------------------------------------------------------------------


def _too_many_entries(count: int) -> ModelRefused:
    return _refuse(
        f"The .keras file has {count} entries (at most {MAX_ZIP_ENTRIES} allowed): refused as a "
        "possible zip bomb.",
        code="zip_bomb",
    )


def _check_zip_directory(*, path: Path) -> None:
    """Refuse an oversized zip directory from its end record, before ZipFile reads all of it.

    zipfile.ZipFile builds one ZipInfo per directory entry in its constructor (a 17 MB zip of
    200,000 entries costs over 100 MB), and it walks the directory by its byte size whatever
    count the end record declares. zipfile's own end-record reader is used so the record judged
    here is the one ZipFile then follows, decoys in the archive comment included.
    """
    # zipfile's end-record reader and the indexes into its record are private, so typeshed
    # does not declare them: hence the attr-defined ignores below.
    try:
        with open(path, "rb") as handle:
            end_record = zipfile._EndRecData(handle)  # type: ignore[attr-defined]  # noqa: SLF001 - see the docstring
    except (OSError, zipfile.BadZipFile) as exc:
        raise _refuse(
            f"The .keras file is truncated or corrupted: it is not a readable zip ({exc}).",
            code="corrupted",
        ) from exc
    if not end_record:
        return  # ZipFile refuses it as not a zip, with the usual message
    if end_record[zipfile._ECD_ENTRIES_TOTAL] > MAX_ZIP_ENTRIES:  # type: ignore[attr-defined]  # noqa: SLF001
        raise _too_many_entries(end_record[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]  # noqa: SLF001
    directory_bytes = end_record[zipfile._ECD_SIZE]  # type: ignore[attr-defined]  # noqa: SLF001
    if directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise _refuse(
            f"The .keras file's zip directory takes {directory_bytes:,} bytes (a Keras model needs "
            f"a few hundred; at most {MAX_ZIP_DIRECTORY_BYTES:,} accepted): refused as a possible "
            "zip bomb.",
            code="zip_bomb",
        )


def _open_keras_archive(*, path: Path, max_uncompressed_bytes: int) -> zipfile.ZipFile:
    _check_zip_directory(path=path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse(
            f"The .keras file is truncated or corrupted: it is not a readable zip ({exc}).",
            code="corrupted",
        ) from exc
    try:
        _check_zip_entries(archive=archive, max_uncompressed_bytes=max_uncompressed_bytes)
    except BaseException:
        archive.close()
        raise
    return archive


def _check_zip_entries(*, archive: zipfile.ZipFile, max_uncompressed_bytes: int) -> None:
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_ENTRIES:
        raise _too_many_entries(len(entries))
    declared_bytes = sum(entry.file_size for entry in entries)
    if declared_bytes > max_uncompressed_bytes:
        raise _refuse(
            f"The .keras file would expand to {declared_bytes / 1024**3:.1f} GiB "
            f"(limit {max_uncompressed_bytes / 1024**3:.1f} GiB): refused as a possible zip bomb.",
            code="zip_bomb",
        )
    names: set[str] = set()
    for entry in entries:
        name = entry.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
            raise _refuse(f"The .keras file contains an unsafe entry name '{name}'.", code="corrupted")
        if name in names:
            # zipfile reads the last of two same-named entries; other zip readers the first.
            raise _refuse(f"The .keras file contains the entry '{name}' twice.", code="corrupted")
        names.add(name)
    if "config.json" not in names:
        raise _refuse("The zip file is not a Keras model: it has no config.json.", code="not_a_model")
    if not names & {KERAS_WEIGHTS_H5, "model.weights.npz", "model.weights.json"}:
        raise _refuse("The .keras file has an architecture but no weights.", code="no_weights")


def _read_zip_member(*, archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    # Read at most limit+1 bytes so a header lying about the size cannot make us inflate more.
    try:
        with archive.open(name) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse(
            f"The .keras file is corrupted: '{name}' cannot be decompressed ({exc}).",
            code="corrupted",
        ) from exc
    if len(data) > limit:
        raise _refuse(f"The .keras file's '{name}' is unreasonably large.", code="too_large")
    return data


def _read_keras_zip_config(*, archive: zipfile.ZipFile) -> tuple[Any, str | None]:
    raw_config = _read_zip_member(archive=archive, name="config.json", limit=MAX_CONFIG_BYTES)
    keras_version = None
    if "metadata.json" in archive.NameToInfo:
        metadata = _decode_json(
            raw=_read_zip_member(archive=archive, name="metadata.json", limit=1024**2),
            where="metadata.json",
        )
        if isinstance(metadata, dict) and metadata.get("keras_version") is not None:
            keras_version = str(metadata["keras_version"])[:MAX_VERSION_BYTES]
    return _decode_json(raw=raw_config, where="config.json"), keras_version


class _MemberWindow(io.RawIOBase):
    """A read-only, seekable view of one stored (uncompressed) zip member, for h5py."""

    def __init__(self, handle: Any, *, start: int, length: int) -> None:
        super().__init__()
        self._handle, self._start, self._length, self._position = handle, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._length - self._position))
        if count == 0:
            return 0
        self._handle.seek(self._start + self._position)
        received = self._handle.readinto(view[:count])
        self._position += received
        return received

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position


def _stored_member_start(*, handle: Any, info: zipfile.ZipInfo) -> int:
    """File offset of a member's data, from its local header (checked as ZipFile.open does)."""
    handle.seek(info.header_offset)
    header = handle.read(30)
    if len(header) != 30 or header[:4] != ZIP_MAGIC:
        raise _refuse(
            f"The .keras file is corrupted: '{info.filename}' has no local header.", code="corrupted"
        )
    name_length, extra_length = struct.unpack_from("<HH", header, 26)
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if handle.read(name_length).decode(encoding, errors="replace") != info.orig_filename:
        raise _refuse(f"The .keras file is corrupted: '{info.filename}' has two names.", code="corrupted")
    return info.header_offset + 30 + name_length + extra_length


def _open_keras_weights(*, stack: contextlib.ExitStack, path: Path, archive: zipfile.ZipFile) -> Any | None:
    """model.weights.h5 of a .keras zip as a checked h5py.File, or None when HDF5 cannot open it.

    Keras reads the weights with the same h5py file-object driver, so weights HDF5 cannot open
    here are weights Keras cannot load either: the load fails later, before any weight is used.
    """
    import h5py

    info = archive.NameToInfo.get(KERAS_WEIGHTS_H5)
    if info is None:
        return None
    handle: IO[bytes]  # the model file itself, or a temporary file holding the inflated member
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size:
        handle = stack.enter_context(open(path, "rb"))
        start = _stored_member_start(handle=handle, info=info)
        source: Any = _MemberWindow(handle, start=start, length=info.file_size)
    else:
        # A recompressed file: inflate it once (its declared size is capped) rather than let
        # HDF5 seek back and forth in a deflate stream.
        handle = source = stack.enter_context(tempfile.TemporaryFile(prefix="gradcam3d-weights-"))
        start = 0
        try:
            with archive.open(info) as member:
                shutil.copyfileobj(member, source, 1024**2)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return None
    try:
        weights = h5py.File(source, "r")
    except (OSError, ValueError):
        return None
    stack.callback(weights.close)  # before the handle above: h5py must not outlive its file
    _check_h5_container(
        weights,
        raw=_RawReader(handle=handle, base=start + weights.userblock_size),
        label=f"The .keras file's weights ({KERAS_WEIGHTS_H5})",
    )
    return weights


# ---------------------------------------------------------------------------------------------
# Allowlist walk
#
# Every dict in the config is visited: Keras deserializes any dict that has no "config" key
# value by value, and its legacy h5 loader decodes every dict of the JSON (TensorShape,
# TypeSpec, ...) before deserializing anything, so no key can be skipped as harmless.


def _activation_name(value: Any) -> str | None:
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "function":
        return str(value.get("config"))
    return None


def _check_value(value: Any, *, where: str, key: str | None, depth: int) -> None:
    if depth > MAX_CONFIG_DEPTH:
        raise _refuse(f"The model's configuration is nested too deeply (at '{where}').")
    if isinstance(value, dict):
        if "class_name" in value:
            _check_object(value, where=where, key=key, depth=depth + 1)
            return
        for child_key, child in value.items():
            _check_entry(child, name=str(child_key), where=where, key=str(child_key), depth=depth + 1)
    elif isinstance(value, list):
        for child in value:
            _check_value(child, where=where, key=key, depth=depth + 1)
    elif isinstance(value, str) and key in {"activation", "recurrent_activation"}:
        if value not in BUILTIN_ACTIVATIONS:
            raise _refuse(
                f"Layer '{where}' uses the activation '{value}', which is not a built-in Keras "
                "activation (custom objects are refused).",
                code="custom_object",
            )


def _check_entry(value: Any, *, name: str, where: str, key: str | None, depth: int) -> None:
    # Keras compiles a model from its compile_config while deserializing it, even when loading
    # with compile=False (nested models), so it is checked as training settings.
    if name == "compile_config":
        _check_compile_config(value, where=where, depth=depth)
    else:
        _check_value(value, where=where, key=key, depth=depth)


def _check_children(obj: dict[str, Any], *, where: str, depth: int, checked: tuple[str, ...]) -> None:
    """Walk every key of a serialized object except those the caller validated itself."""
    for child_key, child in obj.items():
        if child_key in checked:
            continue
        _check_entry(
            child,
            name=str(child_key),
            where=where,
            key=None if child_key == "config" else str(child_key),
            depth=depth + 1,
        )


def _is_allowed_module(module: Any) -> bool:
    # Keras resolves a class from (module, class_name); restricting modules to the public
    # namespaces and the layer/model/initializer packages keeps an allowlisted class name from
    # being looked up somewhere unexpected.
    if not isinstance(module, str):
        return False
    return module in ALLOWED_MODULES or module.startswith(ALLOWED_MODULE_PREFIXES)


def _describe(where: str, key: str | None) -> str:
    return f"Layer '{where}'" if key is None else f"Layer '{where}' ({key})"


def _check_object(obj: dict[str, Any], *, where: str, key: str | None, depth: int) -> None:
    """Check one serialized Keras object ({class_name, config, module, registered_name})."""
    class_name = obj.get("class_name")
    config = obj.get("config")
    if (
        key is not None
        and isinstance(config, dict)
        and isinstance(config.get("name"), str)
        and class_name not in ALLOWED_OBJECT_CLASS_NAMES
    ):
        # A layer held inside another layer's config (TimeDistributed, Bidirectional, RNN
        # cells) gets its own path segment so messages name it.
        where, key = f"{where}/{config['name']}", None
    subject = _describe(where, key)
    if not isinstance(class_name, str):
        raise _refuse(f"{subject} has a malformed class name.", code="corrupted")
    if class_name in ALLOWED_DATA_MARKERS:
        # Data only when Keras rebuilds them from "config"; without it Keras deserializes every
        # value of the dict, so everything but the marker itself is walked.
        _check_children(obj, where=where, depth=depth, checked=("class_name",))
        return
    if class_name == "__lambda__":
        raise _refuse(f"{subject} contains serialized Python lambda code, which is refused.", code="lambda")
    if class_name == "function":
        _check_function(obj, subject=subject)
        _check_children(obj, where=where, depth=depth, checked=("class_name", "module"))
        return
    _check_class(obj, class_name=class_name, where=where, subject=subject)
    _check_children(obj, where=where, depth=depth, checked=OBJECT_IDENTITY_KEYS)


def _check_function(obj: dict[str, Any], *, subject: str) -> None:
    module = obj.get("module")
    function_name = obj.get("config")
    if not (
        isinstance(module, str)
        and (module == "keras.activations" or module.startswith("keras.src.activations"))
        and function_name in BUILTIN_ACTIVATIONS
    ):
        raise _refuse(
            f"{subject} refers to the function '{function_name}' from module '{module}', "
            "which is not a built-in Keras activation (custom objects are refused).",
            code="custom_object",
        )


def _check_class(obj: dict[str, Any], *, class_name: str, where: str, subject: str) -> None:
    module = obj.get("module")
    registered_name = obj.get("registered_name")
    if class_name in REFUSED_LAYER_REASONS:
        raise _refuse(
            f"Layer '{where}' {REFUSED_LAYER_REASONS[class_name]}; such layers are refused.",
            code="lambda" if class_name == "Lambda" else "unsafe_layer",
        )
    if module is not None and not _is_allowed_module(module):
        raise _refuse(
            f"{subject} comes from the module '{module}' (class '{class_name}'), which is not a "
            "built-in Keras layer module; custom code is refused.",
            code="custom_object",
        )
    if registered_name is not None and registered_name != class_name:
        raise _refuse(
            f"{subject} is the custom registered object '{registered_name}', which is not a "
            "built-in Keras class; custom objects are refused.",
            code="custom_object",
        )
    if ">" in class_name:  # h5 configs name registered custom classes "Package>Name"
        raise _refuse(
            f"{subject} is the custom registered object '{class_name}', which is not a "
            "built-in Keras class; custom objects are refused.",
            code="custom_object",
        )
    allowed = ALLOWED_LAYER_CLASS_NAMES | MODEL_CLASS_NAMES | ALLOWED_OBJECT_CLASS_NAMES
    if class_name not in allowed:
        raise _refuse(
            f"{subject} is of class '{class_name}', which is not a built-in Keras class this "
            "platform accepts (unknown or custom objects are refused).",
            code="custom_object",
        )


# -- compile_config -----------------------------------------------------------------------------


def _check_compile_config(value: Any, *, where: str, depth: int) -> None:
    """Check a compile_config (optimizer, loss, metrics) found on the object at `where`.

    Its own allowlist: objects from Keras' optimizer, schedule, loss and metric modules,
    built-in functions and names for them; layers, code and custom objects are refused.
    """
    place = f"The compile_config (training settings) of '{where}'"
    _check_training_value(value, place=place, names=False, depth=depth)


def _is_training_module(module: Any) -> bool:
    return isinstance(module, str) and (
        module in TRAINING_MODULES or module.startswith(TRAINING_MODULE_PREFIXES)
    )


def _check_training_value(value: Any, *, place: str, names: bool, depth: int) -> None:
    # `names`: under optimizer/loss/metrics, where Keras resolves a string to an object.
    if depth > MAX_CONFIG_DEPTH:
        raise _refuse(f"{place} is nested too deeply.")
    if isinstance(value, dict):
        if "class_name" in value:
            _check_training_object(value, place=place, depth=depth + 1)
            return
        for child_key, child in value.items():
            _check_training_value(
                child, place=place, names=names or child_key in TRAINING_NAME_KEYS, depth=depth + 1
            )
    elif isinstance(value, list):
        for child in value:
            _check_training_value(child, place=place, names=names, depth=depth + 1)
    elif isinstance(value, str) and names and not BUILTIN_NAME_PATTERN.fullmatch(value):
        raise _refuse(
            f"{place} names the optimizer, loss or metric '{value}', which is not a built-in Keras "
            "name (custom objects are refused).",
            code="custom_object",
        )


def _check_training_object(obj: dict[str, Any], *, place: str, depth: int) -> None:
    class_name, module = obj.get("class_name"), obj.get("module")
    registered_name = obj.get("registered_name")
    if not isinstance(class_name, str):
        raise _refuse(f"{place} has an object with a malformed class name.", code="corrupted")
    checked: tuple[str, ...] = OBJECT_IDENTITY_KEYS
    if class_name in ALLOWED_DATA_MARKERS:
        checked = ("class_name",)
    elif class_name == "__lambda__":
        raise _refuse(f"{place} contains serialized Python lambda code, which is refused.", code="lambda")
    elif class_name == "function":
        function_name = obj.get("config")
        if not (
            isinstance(function_name, str)
            and BUILTIN_NAME_PATTERN.fullmatch(function_name)
            and (module == "builtins" or _is_training_module(module))
        ):
            raise _refuse(
                f"{place} refers to the function '{function_name}' from module '{module}', which "
                "is not a built-in Keras loss or metric (custom objects are refused).",
                code="custom_object",
            )
        checked = ("class_name", "module")
    elif class_name in REFUSED_LAYER_REASONS:
        raise _refuse(
            f"{place} holds an object that {REFUSED_LAYER_REASONS[class_name]}; such objects are refused.",
            code="lambda" if class_name == "Lambda" else "unsafe_layer",
        )
    elif ">" in class_name or (registered_name is not None and registered_name != class_name):
        raise _refuse(
            f"{place} holds the custom registered object '{registered_name or class_name}', which "
            "is not a built-in Keras class; custom objects are refused.",
            code="custom_object",
        )
    elif not (
        _is_training_module(module)
        or (class_name in ALLOWED_OBJECT_CLASS_NAMES and _is_allowed_module(module))
    ):
        raise _refuse(
            f"{place} holds '{class_name}' from module '{module}', which is not a Keras optimizer, "
            "loss or metric module (custom objects are refused).",
            code="custom_object",
        )
    for child_key, child in obj.items():
        if child_key not in checked:
            _check_training_value(child, place=place, names=False, depth=depth + 1)


class _ModelWalk:
    """Collects Conv3D paths and the layer count while checking every object."""

    def __init__(self) -> None:
        self.conv3d_paths: list[str] = []
        self.layer_count = 0

    def walk_model(self, model_obj: dict[str, Any], *, path: str, depth: int = 0) -> None:
        if depth > MAX_CONFIG_DEPTH:
            raise _refuse(f"The model's configuration is nested too deeply (at '{path}').")
        # Check the model object itself (class, module, registered name, compile_config, build
        # config, inbound nodes...) with all of its config but the layer list, which is walked
        # below with proper per-layer paths.
        config = model_obj.get("config")
        if not isinstance(config, dict):
            raise _refuse(f"Sub-model '{path}' has a malformed configuration.", code="corrupted")
        shallow = dict(model_obj, config={k: v for k, v in config.items() if k != "layers"})
        _check_object(shallow, where=path, key=None, depth=depth)
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise _refuse(f"Model '{path}' has no layer list in its configuration.", code="not_a_model")
        for index, layer in enumerate(layers):
            if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
                raise _refuse(f"Layer {index} of '{path}' is malformed.", code="corrupted")
            layer_path = f"{path}/{_layer_name(layer, index)}"
            class_name = layer["class_name"]
            if class_name in MODEL_CLASS_NAMES:
                self.layer_count += 1
                self.walk_model(layer, path=layer_path, depth=depth + 1)
                continue
            _check_object(layer, where=layer_path, key=None, depth=depth + 1)
            if class_name == "InputLayer":
                continue
            self.layer_count += 1
            if class_name in CONV3D_CLASS_NAMES:
                data_format = (layer.get("config") or {}).get("data_format", "channels_last")
                if data_format not in (None, "channels_last"):
                    raise _refuse(
                        f"Conv3D layer '{layer_path}' uses data_format '{data_format}'; only "
                        "channels_last (batch, frames, height, width, channels) is supported.",
                        code="bad_input_shape",
                    )
                self.conv3d_paths.append(layer_path)


def _layer_name(layer: dict[str, Any], index: int) -> str:
    raw_config = layer.get("config")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    name = config.get("name") or layer.get("name") or f"layer_{index}"
    return str(name)


# ---------------------------------------------------------------------------------------------
# Input and output shapes, read from the config only


def _as_shape(value: Any) -> list[Any] | None:
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, int) for v in value):
        return list(value)
    return None


def _normalise_endpoints(value: Any) -> list[list[Any]]:
    # Functional configs store one endpoint as [name, 0, 0] and several as [[...], [...]].
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, list) and item]
    if isinstance(value, dict):  # a dict of named inputs
        return [item for item in value.values() if isinstance(item, list) and item]
    return []


def _layers_by_name(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {_layer_name(layer, i): layer for i, layer in enumerate(config.get("layers") or [])}


def _input_layer_shape(layer: dict[str, Any]) -> list[Any] | None:
    config = layer.get("config") or {}
    for key in ("batch_shape", "batch_input_shape"):
        shape = _as_shape(config.get(key))
        if shape is not None:
            return shape
    build_config = layer.get("build_config") or {}
    return _as_shape(build_config.get("input_shape"))


def _model_input_shape(model_obj: dict[str, Any], *, path: str) -> list[Any]:
    config = model_obj["config"]
    layers = config.get("layers") or []
    if model_obj.get("class_name") == "Sequential":
        candidates: list[Any] = []
        if layers and layers[0].get("class_name") == "InputLayer":
            candidates.append(_input_layer_shape(layers[0]))
        candidates.append(_as_shape(config.get("build_input_shape")))
        candidates.append(_as_shape((model_obj.get("build_config") or {}).get("input_shape")))
        if layers:
            candidates.append(_input_layer_shape(layers[0]))
        for shape in candidates:
            if shape is not None:
                return shape
        raise _refuse(
            f"The Sequential model '{path}' was saved before it was built, so its input shape is "
            "unknown: build it (call it on data or add keras.Input) before saving.",
            code="bad_input_shape",
        )
    endpoints = _normalise_endpoints(config.get("input_layers"))
    if len(endpoints) != 1:
        raise _refuse(
            f"The model has {len(endpoints)} inputs; a video classifier must take exactly one input clip.",
            code="bad_input_shape",
        )
    input_layer = _layers_by_name(config).get(str(endpoints[0][0]))
    shape = _input_layer_shape(input_layer) if input_layer else None
    if shape is None:
        raise _refuse(
            "The model's input shape cannot be read from its configuration.", code="bad_input_shape"
        )
    return shape


def _validate_input_shape(shape: list[Any]) -> list[int]:
    rendered = "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
    if len(shape) != 5:
        hint = " — this looks like a 2D image model" if len(shape) == 4 else ""
        raise _refuse(
            f"The model's input has shape {rendered}{hint}; a 3D video model needs a 5-D input "
            "(batch, frames, height, width, channels).",
            code="bad_input_shape",
        )
    frames, height, width, channels = shape[1:]
    if any(d is None for d in (frames, height, width, channels)):
        raise _refuse(
            f"The model's input shape {rendered} leaves frames, height, width or channels "
            "undefined (None); the platform needs fixed sizes to preprocess videos.",
            code="bad_input_shape",
        )
    if min(frames, height, width, channels) < 1:
        raise _refuse(
            f"The model's input shape {rendered} has a zero or negative size.", code="bad_input_shape"
        )
    if frames > MAX_FRAMES or height > MAX_SIDE or width > MAX_SIDE:
        raise _refuse(
            f"The model's input shape {rendered} is absurd: at most {MAX_FRAMES} frames and "
            f"{MAX_SIDE}x{MAX_SIDE} pixels are accepted.",
            code="bad_input_shape",
        )
    if channels not in ALLOWED_CHANNELS:
        raise _refuse(
            f"The model's input shape {rendered} has {channels} channels; only 1 (grayscale) or "
            "3 (RGB) are supported.",
            code="bad_input_shape",
        )
    if math.prod((frames, height, width, channels)) > MAX_INPUT_ELEMENTS:
        raise _refuse(
            f"The model's input shape {rendered} is absurd: more than {MAX_INPUT_ELEMENTS:,} "
            "values per clip.",
            code="bad_input_shape",
        )
    return [int(frames), int(height), int(width), int(channels)]


def _layer_input_shape(layer: dict[str, Any]) -> list[Any] | None:
    shape = _as_shape((layer.get("build_config") or {}).get("input_shape"))
    if shape is not None:
        return shape
    nodes = layer.get("inbound_nodes") or []
    if nodes and isinstance(nodes[0], dict):
        args = nodes[0].get("args") or []
        if args and isinstance(args[0], dict):
            return _as_shape((args[0].get("config") or {}).get("shape"))
    return None


def _predecessor_name(layer: dict[str, Any]) -> str | None:
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return None
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [{"class_name": "__keras_tensor__", ...}]}
        args = node.get("args") or []
        if args and isinstance(args[0], dict):
            history = (args[0].get("config") or {}).get("keras_history")
            if isinstance(history, list) and history:
                return str(history[0])
        return None
    if isinstance(node, list) and node and isinstance(node[0], list) and node[0]:
        return str(node[0][0])  # Keras 2: [[["name", 0, 0, {}]]]
    return None


def _model_output(model_obj: dict[str, Any], *, path: str) -> tuple[list[Any], str]:
    """Return (output shape with batch, output activation) of a model config."""
    config = model_obj["config"]
    layers = [layer for layer in (config.get("layers") or []) if layer.get("class_name") != "InputLayer"]
    if not layers:
        raise _refuse(f"Model '{path}' has no layers.", code="not_a_model")
    if model_obj.get("class_name") == "Sequential":
        position = {id(layer): i for i, layer in enumerate(layers)}

        def previous(layer: dict[str, Any]) -> dict[str, Any] | None:
            index = position[id(layer)]
            return layers[index - 1] if index > 0 else None

        return _trace_output(layers[-1], previous=previous, path=path)
    endpoints = _normalise_endpoints(config.get("output_layers"))
    if len(endpoints) != 1:
        raise _refuse(
            f"The model has {len(endpoints)} outputs; a classifier must have exactly one output "
            "of class scores.",
            code="bad_output",
        )
    by_name = _layers_by_name(config)
    output_layer = by_name.get(str(endpoints[0][0]))
    if output_layer is None:
        raise _refuse("The model's output layer is missing from its configuration.", code="corrupted")

    def previous_functional(layer: dict[str, Any]) -> dict[str, Any] | None:
        name = _predecessor_name(layer)
        return by_name.get(name) if name is not None else None

    return _trace_output(output_layer, previous=previous_functional, path=path)


def _trace_output(layer: dict[str, Any], *, previous: Any, path: str) -> tuple[list[Any], str]:
    activation: str | None = None
    current: dict[str, Any] | None = layer
    for _ in range(1000):
        if current is None:
            break
        class_name = current.get("class_name")
        config = current.get("config") or {}
        layer_path = f"{path}/{_layer_name(current, 0)}"
        if class_name in MODEL_CLASS_NAMES:
            shape, inner_activation = _model_output(current, path=layer_path)
            return shape, activation or inner_activation
        if class_name == "Dense":
            input_shape = _layer_input_shape(current)
            rank = len(input_shape) if input_shape is not None else 2
            shape = [None] * (rank - 1) + [config.get("units")]
            return shape, activation or _activation_name(config.get("activation")) or "custom"
        if class_name in (
            "GlobalAveragePooling3D",
            "GlobalMaxPooling3D",
            "GlobalAvgPool3D",
            "GlobalMaxPool3D",
        ):
            input_shape = _layer_input_shape(current)
            if input_shape is not None and not config.get("keepdims"):
                return [input_shape[0], input_shape[-1]], activation or "linear"
        if class_name == "Activation":
            activation = activation or _activation_name(config.get("activation"))
        elif class_name == "Softmax":
            activation = activation or "softmax"
        elif class_name in ACTIVATION_LAYER_NAMES:
            activation = activation or ACTIVATION_LAYER_NAMES[class_name]
        elif class_name not in SHAPE_PRESERVING_CLASS_NAMES:
            raise _refuse(
                f"The number of classes cannot be read from the output layer '{layer_path}' "
                f"({class_name}); a classifier must end with a Dense layer giving one score per "
                "class (optionally followed by an activation).",
                code="bad_output",
            )
        current = previous(current)
    raise _refuse("The model's output cannot be traced back to a Dense layer.", code="bad_output")


# ---------------------------------------------------------------------------------------------
# Input preprocessing the model does itself (Rescaling, Normalization)
#
# The platform scales pixels to [0, 1] by default; a model that starts with Rescaling(1/255)
# (as in the Keras tutorials) or a Normalization adapted on 0-255 frames would then see its
# input divided twice. The layers the input meets before the first one that changes features
# are read from the config (statistics of an adapted Normalization from the weights).


@dataclass
class _Preprocessing:
    entry: dict[str, Any]  # the public description (see inspect_model)
    keras_weights_group: str  # where a .keras weights file keeps this layer's variables
    h5_weights_prefix: str  # where an .h5 file keeps them: "<prefix>/mean", "<prefix>/variance"


def _snake_case(name: str) -> str:
    # keras.src.utils.naming.to_snake_case, which names layers' groups in .keras weights files.
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _keras_weights_names(model_obj: dict[str, Any]) -> dict[int, str]:
    """Group name of each layer in a .keras weights file, as Keras' saving_lib assigns it."""
    names: dict[int, str] = {}
    used: dict[str, int] = {}
    for layer in model_obj["config"].get("layers") or []:
        if not isinstance(layer, dict):
            continue
        if model_obj.get("class_name") == "Sequential" and layer.get("class_name") == "InputLayer":
            continue  # Sequential.layers leaves its InputLayer out
        base = _snake_case(str(layer.get("class_name")))
        used[base] = used.get(base, -1) + 1
        names[id(layer)] = base if used[base] == 0 else f"{base}_{used[base]}"
    return names


def _inbound_layer_names(layer: dict[str, Any]) -> set[str]:
    """Names of the layers whose outputs feed `layer` (Keras 3 and Keras 2 node formats)."""
    names: set[str] = set()
    pending: list[tuple[Any, int]] = [(layer.get("inbound_nodes") or [], 0)]
    while pending:
        value, depth = pending.pop()
        if depth > 20:
            continue
        if isinstance(value, dict):
            config = value.get("config")
            history = config.get("keras_history") if isinstance(config, dict) else None
            if value.get("class_name") == "__keras_tensor__" and isinstance(history, list) and history:
                names.add(str(history[0]))
            else:
                pending.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
                names.add(value[0])  # Keras 2: [layer name, node index, tensor index, kwargs]
            else:
                pending.extend((child, depth + 1) for child in value)
    return names


def _input_chain(model_obj: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The layers the model's input goes through one after the other, and whether that chain
    runs to the model's end (False when it forks, where the scan must stop)."""
    config = model_obj["config"]
    layers = [layer for layer in config.get("layers") or [] if isinstance(layer, dict)]
    if model_obj.get("class_name") == "Sequential":
        return layers, True
    endpoints = _normalise_endpoints(config.get("input_layers"))
    by_name = {_layer_name(layer, i): layer for i, layer in enumerate(layers)}
    if len(endpoints) != 1 or str(endpoints[0][0]) not in by_name:
        return [], False
    consumers: dict[str, list[dict[str, Any]]] = {}
    inbound = {id(layer): _inbound_layer_names(layer) for layer in layers}
    for layer in layers:
        for name in inbound[id(layer)]:
            consumers.setdefault(name, []).append(layer)
    current = str(endpoints[0][0])
    chain = [by_name[current]]
    while len(chain) <= len(layers):
        following = consumers.get(current, [])
        if not following:
            return chain, True
        if len(following) != 1 or inbound[id(following[0])] != {current}:
            return chain, False
        chain.append(following[0])
        current = _layer_name(following[0], 0)
    return chain, False


def _scan_model(
    model_obj: dict[str, Any], *, path: str, group: str, top: str | None, found: list[_Preprocessing]
) -> bool:
    """Record the preprocessing layers met first; True when the scan must stop."""
    chain, complete = _input_chain(model_obj)
    names = _keras_weights_names(model_obj)
    for layer in chain:
        name = _layer_name(layer, 0)
        layer_group = f"{group}layers/{names.get(id(layer), '')}"
        if _scan_layer(layer, path=f"{path}/{name}", group=layer_group, top=top or name, found=found):
            return True
    return not complete


def _scan_layer(
    layer: dict[str, Any], *, path: str, group: str, top: str, found: list[_Preprocessing]
) -> bool:
    class_name = layer.get("class_name")
    raw_config = layer.get("config")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    if class_name in MODEL_CLASS_NAMES and isinstance(raw_config, dict):
        return _scan_model(layer, path=path, group=f"{group}/", top=top, found=found)
    if class_name == "TimeDistributed" and isinstance(config.get("layer"), dict):
        inner = config["layer"]
        return _scan_layer(
            inner, path=f"{path}/{_layer_name(inner, 0)}", group=f"{group}/layer", top=top, found=found
        )
    if class_name in INPUT_PREPROCESSING_CLASS_NAMES and not config.get("invert"):
        found.append(
            _Preprocessing(
                entry=_describe_preprocessing(class_name, config=config, path=path),
                keras_weights_group=group,
                h5_weights_prefix=f"model_weights/{top}/{path.rsplit('/', 1)[-1]}",
            )
        )
        return False
    return class_name not in INPUT_TRANSPARENT_CLASS_NAMES


def _numbers(value: Any) -> list[float] | None:
    """A number or nested lists of numbers, flattened; None when absent or not numbers."""
    flat: list[float] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, bool) or item is None:
            return None
        if isinstance(item, (int, float)):
            flat.append(float(item))
        elif isinstance(item, list):
            pending.extend(reversed(item))
        else:
            return None
        if len(flat) > MAX_STATISTICS_VALUES:
            return None
    return flat or None


def _describe_preprocessing(class_name: str, *, config: dict[str, Any], path: str) -> dict[str, Any]:
    if class_name == "Rescaling":
        scale, offset = config.get("scale", 1.0), config.get("offset", 0.0)
        return {
            "layer": path,
            "class_name": "Rescaling",
            "scale": scale if isinstance(scale, (int, float)) else _numbers(scale),
            "offset": offset if isinstance(offset, (int, float)) else _numbers(offset),
        }
    return {
        "layer": path,
        "class_name": "Normalization",
        "mean": _numbers(config.get("mean")),
        "variance": _numbers(config.get("variance")),
    }


def _read_statistic(weights: Any, *, name: str) -> list[float] | None:
    """A small float dataset of the (already link- and storage-checked) weights, or None."""
    import h5py
    import numpy as np

    try:
        dataset = weights.get(name)
        if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != "f":
            return None
        # Bounded: few values, and no chunk larger than them to decompress.
        if dataset.size > MAX_STATISTICS_VALUES or math.prod(dataset.chunks or ()) > MAX_STATISTICS_VALUES:
            return None
        return [float(value) for value in np.asarray(dataset[()]).reshape(-1)]
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):
        return None


def _fill_statistics(found: list[_Preprocessing], *, weights: Any, model_format: str) -> None:
    """Statistics of adapted Normalization layers, which only the weights hold."""
    for item in found:
        entry = item.entry
        if weights is None or entry["class_name"] != "Normalization" or entry["mean"] is not None:
            continue
        if model_format == "keras":
            names = [(f"{item.keras_weights_group}/vars/0", f"{item.keras_weights_group}/vars/1")]
        else:  # Keras 3 names them "mean", tf.keras 2 "mean:0"
            names = [
                (f"{item.h5_weights_prefix}/mean{tail}", f"{item.h5_weights_prefix}/variance{tail}")
                for tail in ("", ":0")
            ]
        for mean_name, variance_name in names:
            mean, variance = (
                _read_statistic(weights, name=mean_name),
                _read_statistic(weights, name=variance_name),
            )
            if mean is not None and variance is not None:
                entry["mean"], entry["variance"] = mean, variance
                break


def _short(values: list[float]) -> str:
    shown = ", ".join(f"{value:.4g}" for value in values[:3])
    return f"({shown}{', ...' if len(values) > 3 else ''})"


def _suggest_scaling(entries: list[dict[str, Any]]) -> tuple[str, str]:
    """(suggested scaling name, one-sentence reason) from the first preprocessing layer."""
    if not entries:
        return "unit", ""
    first = entries[0]
    layer = f"(layer '{first['layer']}')"
    if first["class_name"] == "Rescaling":
        scales = _numbers(first["scale"]) or [1.0]
        offsets = _numbers(first["offset"]) or [0.0]
        largest = max(abs(scale) for scale in scales)
        shown_offset = f", offset={_short(offsets)[1:-1]}" if any(offsets) else ""
        subject = f"The model's input goes first through Rescaling(scale={_short(scales)[1:-1]}{shown_offset}) {layer}"
        if 0 < largest <= RAW_INPUT_MAX_SCALE:
            return (
                "raw",
                f"{subject}, which divides by {1 / largest:.4g} itself, so it is given raw 0–255 pixel values.",
            )
        return "unit", f"{subject}, which expects values in [0, 1], so it is given values scaled to [0, 1]."
    subject = f"The model's input goes first through Normalization {layer}"
    mean, variance = first["mean"], first["variance"]
    if mean is None or variance is None:
        return "raw", (
            f"{subject} whose statistics cannot be read from the file, so it is assumed to take "
            "raw 0–255 pixel values; choose another scaling if its predictions look wrong."
        )
    spread = max([abs(value) for value in mean] + [math.sqrt(max(value, 0.0)) for value in variance])
    if spread > RAW_INPUT_MIN_STATISTIC:
        return "raw", (
            f"{subject} whose mean {_short(mean)} was computed on 0–255 pixel values, so it is "
            "given raw 0–255 pixel values."
        )
    return "unit", (
        f"{subject} whose mean {_short(mean)} was computed on values in [0, 1], so it is given "
        "values scaled to [0, 1]."
    )


def _input_scaling(
    *, model_obj: dict[str, Any], root_name: str, weights: Any, model_format: str
) -> dict[str, Any]:
    found: list[_Preprocessing] = []
    _scan_model(model_obj, path=root_name, group="", top=None, found=found)
    _fill_statistics(found, weights=weights, model_format=model_format)
    entries = [item.entry for item in found]
    suggested, reason = _suggest_scaling(entries)
    return {"input_preprocessing": entries, "suggested_scaling": suggested, "scaling_reason": reason}


# ---------------------------------------------------------------------------------------------
# Public API


def _check_file_size(*, model_path: Path, max_bytes: int | None) -> None:
    if not model_path.is_file():
        raise _refuse(f"The model file '{model_path.name}' does not exist.", code="missing")
    size_limit = DEFAULT_MAX_MODEL_BYTES if max_bytes is None else max_bytes
    size = model_path.stat().st_size
    if size > size_limit:
        raise _refuse(
            f"The model file is {size:,} bytes, over the limit of {size_limit:,} bytes.",
            code="too_large",
        )


def _describe_model(*, model_obj: Any, model_format: str, keras_version: str | None) -> dict[str, Any]:
    """Walk the config against the allowlist and read shapes, classes and Conv3D layers."""
    if not isinstance(model_obj, dict) or model_obj.get("class_name") not in MODEL_CLASS_NAMES:
        found = model_obj.get("class_name") if isinstance(model_obj, dict) else None
        if isinstance(found, str):
            # A custom top-level model class is refused as a custom object, with its name.
            _check_object(
                {
                    "class_name": found,
                    "module": model_obj.get("module"),
                    "registered_name": model_obj.get("registered_name"),
                },
                where=found,
                key=None,
                depth=0,
            )
        raise _refuse(
            f"The file is not a Keras model: its configuration describes '{found}', not a "
            "Sequential or Functional model.",
            code="not_a_model",
        )
    if not isinstance(model_obj.get("config"), dict):
        raise _refuse("The model's configuration is malformed.", code="corrupted")
    root_name = str(model_obj["config"].get("name") or "model")
    walk = _ModelWalk()
    walk.walk_model(model_obj, path=root_name)
    input_shape = _validate_input_shape(_model_input_shape(model_obj, path=root_name))
    if not walk.conv3d_paths:
        raise _refuse(
            "The model has no Conv3D layer (nested sub-models included); 3D Grad-CAM needs at least one.",
            code="no_conv3d",
        )
    output_shape, output_activation = _model_output(model_obj, path=root_name)
    num_classes = output_shape[-1]
    if len(output_shape) != 2 or not isinstance(num_classes, int) or num_classes < 2:
        rendered = "(" + ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(output_shape)) + ")"
        raise _refuse(
            f"The model's output has shape {rendered}; a classifier must output (batch, N) "
            "scores for N >= 2 classes.",
            code="bad_output",
        )
    return {
        "format": model_format,
        "input_shape": input_shape,
        "num_classes": int(num_classes),
        "conv3d_layers": walk.conv3d_paths,
        "output_activation": output_activation,
        "model_class": str(model_obj["class_name"]),
        "model_name": root_name,
        "keras_version": keras_version,
        "layer_count": walk.layer_count,
    }


def inspect_model(
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> dict[str, Any]:
    """Describe a Keras model file from its config alone, or raise ModelRefused saying why.

    `max_bytes` caps the file size (None: DEFAULT_MAX_MODEL_BYTES). No model code runs.
    Besides shapes, classes and Conv3D layers, the result has:
    - "input_preprocessing": the Rescaling / Normalization layers the input meets before any
      layer that changes features (nested sub-models and TimeDistributed included), each
      {"layer": full path, "class_name": "Rescaling", "scale", "offset"} or
      {"layer", "class_name": "Normalization", "mean", "variance"} (lists, or None if unknown);
    - "suggested_scaling": "raw" when the model rescales 0-255 input itself, else "unit";
    - "scaling_reason": one sentence saying why, or "" when there is nothing to say.
    """
    model_path = Path(path)
    _check_file_size(model_path=model_path, max_bytes=max_bytes)
    model_format = detect_model_format(path=model_path)
    with contextlib.ExitStack() as stack:
        opened = _open_model_file(
            stack=stack,
            path=model_path,
            model_format=model_format,
            max_uncompressed_bytes=max_uncompressed_bytes,
        )
        info = _describe_model(
            model_obj=opened.config, model_format=model_format, keras_version=opened.keras_version
        )
        if model_format == "keras":
            weights = _open_keras_weights(stack=stack, path=model_path, archive=opened.container)
        else:
            weights = opened.container  # checked as a whole when it was opened
        info.update(
            _input_scaling(
                model_obj=opened.config,
                root_name=info["model_name"],
                weights=weights,
                model_format=model_format,
            )
        )
    return info


def read_model_config(
    *, path: str | os.PathLike[str], max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES
) -> tuple[str, Any]:
    """(format, config JSON) of a model file, read with inspection's caps but not walked."""
    model_path = Path(path)
    model_format = detect_model_format(path=model_path)
    with contextlib.ExitStack() as stack:
        opened = _open_model_file(
            stack=stack,
            path=model_path,
            model_format=model_format,
            max_uncompressed_bytes=max_uncompressed_bytes,
        )
        return model_format, opened.config


def strip_compile_configs(*, config: Any) -> int:
    """Delete every "compile_config" key of a config, at any depth, in place.

    Returns how many non-empty ones were below the root model. Keras compiles a nested model
    from its own compile_config while deserializing it, even with compile=False
    (serialization_lib's deserialize_keras_object calls compile_from_config when it is not
    empty; the legacy h5 loader reaches it for layers with a "module" key), whereas
    load_model(compile=False) drops the root's itself. Keras writes {} for uncompiled models.
    """
    below_root = 0
    pending: list[tuple[Any, int]] = [(config, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            if "compile_config" in value:
                if value.pop("compile_config") and depth > 0:
                    below_root += 1
            pending.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            pending.extend((child, depth + 1) for child in value)
    return below_root
