"""Load an inspected Keras model safely and expose its Conv3D activations and logits.

`load_model_safely` refuses a file with `inspect_model` (config only, no code) before Keras
deserializes anything, then loads with `safe_mode=True, compile=False`, the loader chosen from
the file's magic bytes. Keras still compiles a nested model from its own compile_config with
compile=False, so when the file has one Keras reads a private copy without any.

`build_probe` gives a callable that runs the model ONCE on an input batch and returns the
requested intermediate activations plus the pre-softmax scores. It works by *replaying* the
model's own layers on real tensors (Sequential: layer by layer; Functional: through Keras'
graph runner; nested sub-models: recursively), because the obvious `keras.Model(model.inputs,
[layer.output, ...])` breaks on loaded Sequential models (`model.output` raises, `layer.output`
lives on another graph) and on layers inside nested sub-models ("not connected to inputs").
Replaying on real tensors creates no new graph nodes and never changes the user's model: the
pre-activation of a final softmax/sigmoid Dense is computed from its own kernel and bias
instead of switching its activation off.

TensorFlow and Keras are imported inside functions only, so importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcam3d.errors import ModelRefused, Refusal
from gradcam3d.modelcheck import inspect_model, read_model_config, strip_compile_configs
from gradcam3d.tf import import_keras

# Keras 3.15 checks HDF5 links, external storage and virtual datasets itself, but which
# release first did so for every loader could not be established here, so modelcheck checks
# them for any version and this stays the oldest Keras 3 the engine is tested against.
MINIMUM_KERAS_VERSION = (3, 14)

# How the logits are obtained from the model's final operation.
LOGITS_FROM_DENSE_PREACTIVATION = "dense_preactivation"  # softmax/sigmoid Dense: x @ W + b
LOGITS_FROM_ACTIVATION_INPUT = "activation_input"  # final Activation/Softmax layer: its input
LOGITS_FROM_MODEL_OUTPUT = "model_output"  # linear output: the output already is the scores
LOGITS_FROM_LOG_PROBABILITIES = "log_probabilities"  # softmax inside an opaque layer: log(p)


def _require_keras_3() -> Any:
    keras = import_keras()

    version = tuple(int(part) for part in keras.__version__.split(".")[:2] if part.isdigit())
    if version < MINIMUM_KERAS_VERSION:
        raise RuntimeError(
            f"Keras {keras.__version__} is too old: the engine needs Keras 3 >= "
            f"{'.'.join(map(str, MINIMUM_KERAS_VERSION))} (never tf-keras)."
        )
    return keras


def load_model_safely(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Any:
    """Inspect, then load a Keras model with safe_mode=True and compile=False.

    Raises ModelRefused (from inspection, before any deserialization, or when Keras cannot
    load a file that passed inspection, e.g. corrupted weights).
    """
    model_path = Path(path)
    info = inspect_model(model_path, max_bytes=max_bytes)
    keras = _require_keras_3()
    with tempfile.TemporaryDirectory(prefix="gradcam3d-model-") as scratch:
        load_path = _keras_load_path(
            model_path=model_path, model_format=info["format"], scratch=Path(scratch)
        )
        try:
            model = keras.saving.load_model(str(load_path), safe_mode=True, compile=False)
        except ModelRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - any loader failure means a bad file here
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            raise ModelRefused(
                f"The model passed inspection but Keras could not load it ({detail}).",
                code="load_failed",
            ) from exc
    if not isinstance(model, keras.Model):
        raise ModelRefused("The file did not load as a Keras model.", code="not_a_model")
    return model


def _keras_load_path(*, model_path: Path, model_format: str, scratch: Path) -> Path:
    """The file Keras reads: the upload itself, or a private copy in `scratch`.

    Keras compiles a nested model from its own compile_config while deserializing it, even
    with compile=False (serialization_lib.deserialize_keras_object calls compile_from_config;
    the legacy h5 loader does so for a nested layer that has a "module" key), which would
    deserialize optimizer, loss and metric objects named by the file. Inspection checks them,
    and Keras is never given one: a file with a nested compile_config is loaded from a copy
    whose config has none (Keras drops the root's itself). Keras picks its loader from the
    file name, so the name also matches the format found from the magic bytes.
    """
    suffixes = (".h5", ".hdf5") if model_format == "h5" else (".keras",)
    _, config = read_model_config(path=model_path)
    if strip_compile_configs(config=config) > 0:
        copy_path = scratch / f"model{suffixes[0]}"
        if model_format == "h5":
            _write_h5_copy(source=model_path, target=copy_path, config=config)
        else:
            _write_keras_copy(source=model_path, target=copy_path, config=config)
        return copy_path
    if model_path.suffix.lower() in suffixes:
        return model_path
    link_path = scratch / f"model{suffixes[0]}"
    try:
        os.symlink(model_path.resolve(), link_path)
    except OSError:
        import shutil

        shutil.copyfile(model_path, link_path)
    return link_path


def _write_keras_copy(*, source: Path, target: Path, config: Any) -> None:
    """Copy a .keras zip entry by entry (streamed, stored) with config.json replaced."""
    import shutil
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as copy:
        for info in original.infolist():
            if info.filename == "config.json":
                copy.writestr("config.json", json.dumps(config))
            elif info.is_dir():
                copy.writestr(info.filename, b"")
            else:
                with (
                    original.open(info) as member,
                    copy.open(info.filename, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as out,
                ):
                    shutil.copyfileobj(member, out, 1024**2)


def _write_h5_copy(*, source: Path, target: Path, config: Any) -> None:
    """Copy an .h5 model with its model_config attribute replaced (bytes, as Keras writes it)."""
    import shutil

    import h5py

    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as copy:
        del copy.attrs["model_config"]
        copy.attrs["model_config"] = json.dumps(config).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Layer paths


def _is_container(layer: Any) -> bool:
    keras = import_keras()

    return isinstance(layer, keras.Model)


def _is_sequential(model: Any) -> bool:
    keras = import_keras()

    return isinstance(model, keras.Sequential)


def _child_layers(model: Any) -> list[Any]:
    keras = import_keras()

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def model_layer_paths(model: Any, *, prefix: str | None = None) -> list[str]:
    """Every layer's full path ("model/sub_model/layer"), nested sub-models included."""
    base = model.name if prefix is None else prefix
    paths: list[str] = []
    for layer in _child_layers(model):
        path = f"{base}/{layer.name}"
        paths.append(path)
        if _is_container(layer):
            paths.extend(model_layer_paths(layer, prefix=path))
    return paths


def conv3d_layer_paths(model: Any) -> list[str]:
    """Full paths of every Conv3D layer, nested sub-models included, in layer order."""
    keras = import_keras()

    found: list[str] = []

    def visit(container: Any, base: str) -> None:
        for layer in _child_layers(container):
            path = f"{base}/{layer.name}"
            if isinstance(layer, keras.layers.Conv3D):
                found.append(path)
            elif _is_container(layer):
                visit(layer, path)

    visit(model, model.name)
    return found


# ---------------------------------------------------------------------------------------------
# Probe


def _activation_name(function: Any) -> str:
    return str(getattr(function, "__name__", "custom")) if function is not None else "linear"


def _final_operation(model: Any) -> Any:
    """The layer whose output is the model's output (descending into nested sub-models)."""
    if _is_sequential(model):
        operation = _child_layers(model)[-1]
    else:
        if len(model.outputs) != 1:
            raise ModelRefused("The model must have exactly one output.", code="bad_output")
        operation = model.outputs[0]._keras_history.operation
    if _is_container(operation):
        return _final_operation(operation)
    return operation


def _logit_strategy(final_operation: Any) -> tuple[str, str]:
    """Return (how logits are found, the model's output activation name)."""
    keras = import_keras()

    if isinstance(final_operation, keras.layers.Dense):
        activation = _activation_name(final_operation.activation)
        if activation == "linear":
            return LOGITS_FROM_MODEL_OUTPUT, activation
        quantized = getattr(final_operation, "quantization_mode", None) is not None
        if activation in ("softmax", "sigmoid") and not quantized:
            return LOGITS_FROM_DENSE_PREACTIVATION, activation
        return (
            LOGITS_FROM_LOG_PROBABILITIES if activation == "softmax" else LOGITS_FROM_MODEL_OUTPUT,
            activation,
        )
    if isinstance(final_operation, keras.layers.Softmax):
        return LOGITS_FROM_ACTIVATION_INPUT, "softmax"
    if isinstance(final_operation, keras.layers.Activation):
        activation = _activation_name(final_operation.activation)
        if activation in ("softmax", "sigmoid"):
            return LOGITS_FROM_ACTIVATION_INPUT, activation
        return LOGITS_FROM_MODEL_OUTPUT, activation
    activation = _activation_name(getattr(final_operation, "activation", None))
    if activation == "softmax":
        return LOGITS_FROM_LOG_PROBABILITIES, activation
    return LOGITS_FROM_MODEL_OUTPUT, activation


@dataclass
class _Recording:
    wanted: frozenset[str]
    captured: dict[str, Any] = field(default_factory=dict)
    logits: Any = None


@dataclass(frozen=True)
class ProbeOutputs:
    activations: list[Any]  # one tensor per requested layer path, in request order
    logits: Any  # (batch, N) pre-softmax scores
    outputs: Any  # (batch, N) exactly what model(x) returns


@dataclass(frozen=True)
class Probe:
    """One forward pass giving intermediate activations and logits of a Keras model.

    `probe(x)` returns (activations, logits); `probe.forward(x)` also returns the model's own
    output. Tensors are the live intermediates of that pass, so inside a GradientTape (or a
    tf.function) the gradient of the logits with respect to each activation is exact.

    `output_activation` is the model's final activation; `probabilities(logits)` maps logits
    back to what the model outputs: softmax for a softmax model, sigmoid (independent per
    class) for a sigmoid model, and softmax for a linear model, whose raw outputs are treated
    as logits. `logit_source` tells how the logits were found (see the LOGITS_FROM_* names):
    "log_probabilities" means the softmax was inside a layer whose pre-activation cannot be
    computed, so log(p), equal to the logits up to a per-sample constant, is used.
    """

    model: Any
    layer_paths: tuple[str, ...]
    output_activation: str
    logit_source: str
    _final_operation: Any = field(repr=False)

    def __call__(self, x: Any) -> tuple[list[Any], Any]:
        result = self.forward(x)
        return result.activations, result.logits

    def forward(self, x: Any) -> ProbeOutputs:
        ops = import_keras().ops

        recording = _Recording(wanted=frozenset(self.layer_paths))
        outputs = self._replay(self.model, x, prefix=self.model.name, recording=recording)
        if self.logit_source == LOGITS_FROM_MODEL_OUTPUT:
            logits = outputs
        elif self.logit_source == LOGITS_FROM_LOG_PROBABILITIES:
            logits = ops.log(ops.maximum(outputs, 1e-30))
        else:
            logits = recording.logits
        missing = [path for path in self.layer_paths if path not in recording.captured]
        if missing or logits is None:
            raise RuntimeError(f"The forward pass did not reach layer(s) {missing or 'logits'}.")
        return ProbeOutputs(
            activations=[recording.captured[path] for path in self.layer_paths],
            logits=logits,
            outputs=outputs,
        )

    def probabilities(self, logits: Any) -> Any:
        ops = import_keras().ops

        if self.output_activation == "sigmoid":
            return ops.sigmoid(logits)
        return ops.softmax(logits, axis=-1)

    # -- replay ------------------------------------------------------------------------------

    def _replay(self, container: Any, inputs: Any, *, prefix: str, recording: _Recording) -> Any:
        if _is_sequential(container):
            x = inputs
            for layer in _child_layers(container):
                x = self._apply(layer, (x,), {}, path=f"{prefix}/{layer.name}", recording=recording)
            return x

        def operation_fn(operation: Any) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                return self._apply(
                    operation, args, kwargs, path=f"{prefix}/{operation.name}", recording=recording
                )

            return run

        # Keras' own graph runner for Functional models (what Functional.call uses), with our
        # hook around each operation so nested sub-models are replayed and outputs captured.
        return container._run_through_graph(inputs, operation_fn=operation_fn)

    def _apply(
        self,
        operation: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        path: str,
        recording: _Recording,
    ) -> Any:
        ops = import_keras().ops

        if _is_container(operation):
            output = self._replay(operation, args[0], prefix=path, recording=recording)
        elif operation is self._final_operation and self.logit_source == LOGITS_FROM_DENSE_PREACTIVATION:
            # Same arithmetic as Dense.call, with the activation applied by us afterwards.
            pre_activation = ops.matmul(args[0], operation.kernel)
            if operation.bias is not None:
                pre_activation = ops.add(pre_activation, operation.bias)
            recording.logits = pre_activation
            output = operation.activation(pre_activation)
        elif operation is self._final_operation and self.logit_source == LOGITS_FROM_ACTIVATION_INPUT:
            recording.logits = args[0]
            output = operation(*args, **kwargs)
        else:
            output = operation(*args, **kwargs)
        if path in recording.wanted:
            recording.captured[path] = output
        return output


def build_probe(model: Any, layer_paths: list[str]) -> Probe:
    """Build a Probe for `layer_paths` (full paths, e.g. from conv3d_layer_paths(model)).

    Raises Refusal(code="unknown_layer") for a path that is not a layer of the model. The
    model object is not modified.
    """
    _require_keras_3()
    known = set(model_layer_paths(model))
    unknown = [path for path in layer_paths if path not in known]
    if unknown:
        raise Refusal(
            f"Unknown layer(s) {', '.join(unknown)}; the model's Conv3D layers are: "
            f"{', '.join(conv3d_layer_paths(model)) or 'none'}.",
            code="unknown_layer",
        )
    final_operation = _final_operation(model)
    logit_source, output_activation = _logit_strategy(final_operation)
    return Probe(
        model=model,
        layer_paths=tuple(layer_paths),
        output_activation=output_activation,
        logit_source=logit_source,
        _final_operation=final_operation,
    )
