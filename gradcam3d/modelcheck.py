"""Inspect an uploaded Keras model file without deserializing it (`python -m gradcam3d inspect`).

Uploaded models are untrusted: a Keras config can name arbitrary Python (Lambda bytecode,
custom classes from any importable module). This module only *reads* the config JSON (the h5
`model_config` attribute or the `.keras` zip's `config.json`) with h5py / zipfile / json, and
walks every object in it, nested sub-models and wrapped layers included, against an allowlist
of built-in Keras classes. Anything not on the list is refused with the offending layer's path
before any Keras code sees the file. It never imports TensorFlow or Keras, so the web side can
run it in a short-lived child process that starts fast.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

from gradcam3d.errors import ModelRefused

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"

DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_ZIP_ENTRIES = 64  # a .keras file has 3 (config.json, metadata.json, model.weights.h5)
MAX_CONFIG_BYTES = 32 * 1024**2
MAX_CONFIG_DEPTH = 200

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
    """
    InputLayer Activation ActivityRegularization Add Average Maximum Minimum Multiply Subtract
    Concatenate Dot Dense EinsumDense Flatten Reshape Permute RepeatVector Identity Masking
    Dropout AlphaDropout GaussianDropout GaussianNoise SpatialDropout1D SpatialDropout2D
    SpatialDropout3D BatchNormalization LayerNormalization GroupNormalization UnitNormalization
    RMSNormalization Normalization Rescaling Resizing CenterCrop
    ReLU LeakyReLU ELU PReLU Softmax
    Conv1D Conv2D Conv3D Convolution1D Convolution2D Convolution3D Conv1DTranspose
    Conv2DTranspose Conv3DTranspose Convolution1DTranspose Convolution2DTranspose
    Convolution3DTranspose DepthwiseConv1D DepthwiseConv2D SeparableConv1D SeparableConv2D
    SeparableConvolution1D SeparableConvolution2D
    ConvLSTM1D ConvLSTM2D ConvLSTM3D LSTM GRU SimpleRNN RNN LSTMCell GRUCell SimpleRNNCell
    StackedRNNCells Bidirectional TimeDistributed
    AveragePooling1D AveragePooling2D AveragePooling3D AvgPool1D AvgPool2D AvgPool3D
    MaxPooling1D MaxPooling2D MaxPooling3D MaxPool1D MaxPool2D MaxPool3D
    AdaptiveAveragePooling1D AdaptiveAveragePooling2D AdaptiveAveragePooling3D
    AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D
    GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D GlobalAvgPool1D
    GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D
    GlobalMaxPool1D GlobalMaxPool2D GlobalMaxPool3D
    Cropping1D Cropping2D Cropping3D ZeroPadding1D ZeroPadding2D ZeroPadding3D
    UpSampling1D UpSampling2D UpSampling3D
    MultiHeadAttention GroupQueryAttention Attention AdditiveAttention Embedding
    """.split()
)

# Non-layer objects that appear inside layer configs: dtype policies, initializers,
# regularizers and constraints (all plain data holders in Keras).
ALLOWED_OBJECT_CLASS_NAMES = frozenset(
    """
    DTypePolicy FloatDTypePolicy Policy
    Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity IdentityInitializer
    LecunNormal LecunUniform Ones Orthogonal OrthogonalInitializer RandomNormal RandomUniform
    TruncatedNormal VarianceScaling Zeros
    L1 L2 L1L2 OrthogonalRegularizer MaxNorm MinMaxNorm NonNeg UnitNorm
    """.split()
)

# Embedded data markers of Keras serialization that carry only data (no code).
ALLOWED_DATA_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__"})

BUILTIN_ACTIVATIONS = frozenset(
    """
    celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh
    leaky_relu linear log_sigmoid log_softmax mish relu relu6 selu sigmoid silu soft_shrink
    softmax softplus softsign sparse_plus sparse_sigmoid sparsemax squareplus swish tanh
    tanh_shrink threshold
    """.split()
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
    """
    Dropout AlphaDropout GaussianDropout GaussianNoise ActivityRegularization Identity
    BatchNormalization LayerNormalization UnitNormalization RMSNormalization
    """.split()
)
ACTIVATION_LAYER_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "ELU": "elu", "PReLU": "prelu"}

ALLOWED_MODULES = frozenset(
    {"keras", "keras.layers", "keras.models", "keras.initializers", "keras.regularizers",
     "keras.constraints", "keras.activations", "keras.dtype_policies", "keras.mixed_precision"}
)
ALLOWED_MODULE_PREFIXES = (
    "keras.src.layers.", "keras.src.models.", "keras.src.initializers", "keras.src.regularizers",
    "keras.src.constraints", "keras.src.activations", "keras.src.dtype_policies",
)

# Keys never deserialized because we load with compile=False (optimizer, loss, metrics).
SKIPPED_KEYS = frozenset({"compile_config"})


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


def _read_h5_config(*, path: Path) -> tuple[dict[str, Any], str | None]:
    import h5py  # local: only this path needs it

    try:
        h5_file = h5py.File(path, "r")
    except OSError as exc:
        raise _refuse(
            f"The HDF5 model file is truncated or corrupted and cannot be read ({exc}).",
            code="corrupted",
        ) from exc
    with h5_file:
        try:
            raw = h5_file.attrs.get("model_config")
            keras_version = h5_file.attrs.get("keras_version")
            group_names = set(h5_file.keys())
            root_attr_names = set(h5_file.attrs.keys())
        except (OSError, RuntimeError, KeyError) as exc:
            raise _refuse(
                f"The HDF5 model file is truncated or corrupted ({exc}).", code="corrupted"
            ) from exc
        if raw is None:
            weight_markers = {"model_weights", "layers", "vars", "_layer_checkpoint_dependencies"}
            if group_names & weight_markers or "layer_names" in root_attr_names:
                raise _refuse(
                    "The file holds only weights (no model architecture): save the whole model "
                    "with model.save('model.h5') or model.save('model.keras'), not save_weights().",
                    code="weights_only",
                )
            raise _refuse(
                "The HDF5 file is not a Keras model: it has no 'model_config' attribute.",
                code="not_a_model",
            )
        if "model_weights" not in group_names:
            raise _refuse(
                "The HDF5 model file has an architecture but no weights ('model_weights' group).",
                code="no_weights",
            )
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        if len(raw) > MAX_CONFIG_BYTES:
            raise _refuse("The model's configuration is unreasonably large.", code="too_large")
        if isinstance(keras_version, bytes):
            keras_version = keras_version.decode("utf-8", errors="replace")
    config = _decode_json(raw=raw, where="configuration (model_config)")
    return config, (str(keras_version) if keras_version is not None else None)


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


def _read_keras_zip_config(
    *, path: Path, max_uncompressed_bytes: int
) -> tuple[dict[str, Any], str | None]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse(
            f"The .keras file is truncated or corrupted: it is not a readable zip ({exc}).",
            code="corrupted",
        ) from exc
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise _refuse(
                f"The .keras file has {len(entries)} entries (at most {MAX_ZIP_ENTRIES} allowed): "
                "refused as a possible zip bomb.",
                code="zip_bomb",
            )
        declared_bytes = sum(entry.file_size for entry in entries)
        if declared_bytes > max_uncompressed_bytes:
            raise _refuse(
                f"The .keras file would expand to {declared_bytes / 1024**3:.1f} GiB "
                f"(limit {max_uncompressed_bytes / 1024**3:.1f} GiB): refused as a possible zip bomb.",
                code="zip_bomb",
            )
        for entry in entries:
            name = entry.filename
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
                raise _refuse(f"The .keras file contains an unsafe entry name '{name}'.", code="corrupted")
        names = {entry.filename for entry in entries}
        if "config.json" not in names:
            raise _refuse(
                "The zip file is not a Keras model: it has no config.json.", code="not_a_model"
            )
        if not names & {"model.weights.h5", "model.weights.npz", "model.weights.json"}:
            raise _refuse("The .keras file has an architecture but no weights.", code="no_weights")
        raw_config = _read_zip_member(archive=archive, name="config.json", limit=MAX_CONFIG_BYTES)
        keras_version = None
        if "metadata.json" in names:
            metadata = _decode_json(
                raw=_read_zip_member(archive=archive, name="metadata.json", limit=1024**2),
                where="metadata.json",
            )
            if isinstance(metadata, dict) and metadata.get("keras_version") is not None:
                keras_version = str(metadata["keras_version"])
    config = _decode_json(raw=raw_config, where="config.json")
    return config, keras_version


# ---------------------------------------------------------------------------------------------
# Allowlist walk


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
            if child_key not in SKIPPED_KEYS:
                _check_value(child, where=where, key=str(child_key), depth=depth + 1)
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
    module = obj.get("module")
    registered_name = obj.get("registered_name")
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
        return
    if class_name == "__lambda__":
        raise _refuse(
            f"{subject} contains serialized Python lambda code, which is refused.", code="lambda"
        )
    if class_name == "function":
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
        return
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
    for child_key, child in obj.items():
        if child_key in {"class_name", "module", "registered_name"} or child_key in SKIPPED_KEYS:
            continue
        _check_value(child, where=where, key=None if child_key == "config" else child_key, depth=depth + 1)


class _ModelWalk:
    """Collects Conv3D paths and the layer count while checking every object."""

    def __init__(self) -> None:
        self.conv3d_paths: list[str] = []
        self.layer_count = 0

    def walk_model(self, model_obj: dict[str, Any], *, path: str, depth: int = 0) -> None:
        if depth > MAX_CONFIG_DEPTH:
            raise _refuse(f"The model's configuration is nested too deeply (at '{path}').")
        # Check the model object itself (class, module, registered name), but not its layer
        # list, which is walked below with proper per-layer paths.
        shallow = {k: v for k, v in model_obj.items() if k != "config"}
        config = model_obj.get("config")
        if not isinstance(config, dict):
            raise _refuse(f"Sub-model '{path}' has a malformed configuration.", code="corrupted")
        shallow["config"] = {k: v for k, v in config.items() if k != "layers"}
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
    config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
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
            f"The model has {len(endpoints)} inputs; a video classifier must take exactly one "
            "input clip.",
            code="bad_input_shape",
        )
    input_layer = _layers_by_name(config).get(str(endpoints[0][0]))
    shape = _input_layer_shape(input_layer) if input_layer else None
    if shape is None:
        raise _refuse("The model's input shape cannot be read from its configuration.", code="bad_input_shape")
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
        raise _refuse(f"The model's input shape {rendered} has a zero or negative size.", code="bad_input_shape")
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
        if class_name in ("GlobalAveragePooling3D", "GlobalMaxPooling3D", "GlobalAvgPool3D", "GlobalMaxPool3D"):
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
# Public API


def inspect_model(
    path: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES,
) -> dict[str, Any]:
    """Describe a Keras model file from its config alone, or raise ModelRefused saying why.

    `max_bytes` caps the file size (None: DEFAULT_MAX_MODEL_BYTES). No model code runs.
    """
    model_path = Path(path)
    if not model_path.is_file():
        raise _refuse(f"The model file '{model_path.name}' does not exist.", code="missing")
    size_limit = DEFAULT_MAX_MODEL_BYTES if max_bytes is None else max_bytes
    size = model_path.stat().st_size
    if size > size_limit:
        raise _refuse(
            f"The model file is {size:,} bytes, over the limit of {size_limit:,} bytes.",
            code="too_large",
        )
    model_format = detect_model_format(path=model_path)
    if model_format == "h5":
        model_obj, keras_version = _read_h5_config(path=model_path)
    else:
        model_obj, keras_version = _read_keras_zip_config(
            path=model_path, max_uncompressed_bytes=max_uncompressed_bytes
        )
    if not isinstance(model_obj, dict) or model_obj.get("class_name") not in MODEL_CLASS_NAMES:
        found = model_obj.get("class_name") if isinstance(model_obj, dict) else None
        if isinstance(found, str):
            # A custom top-level model class is refused as a custom object, with its name.
            _check_object({"class_name": found, "module": model_obj.get("module"),
                           "registered_name": model_obj.get("registered_name")},
                          where=found, key=None, depth=0)
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
            "The model has no Conv3D layer (nested sub-models included); 3D Grad-CAM needs at "
            "least one.",
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


def _handle_inspect(args: argparse.Namespace) -> dict[str, Any]:
    return inspect_model(args.model, max_bytes=args.max_bytes)


def register_cli(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="describe a Keras model file from its config, without running any of its code",
    )
    parser.add_argument("model", help="path of the .h5 or .keras file")
    parser.add_argument(
        "--max-bytes", type=int, default=None, help=f"file size limit (default {DEFAULT_MAX_MODEL_BYTES})"
    )
    parser.set_defaults(handler=_handle_inspect)
