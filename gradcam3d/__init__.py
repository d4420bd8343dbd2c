"""gradcam3d: 3D Grad-CAM for Keras video classifiers.

A plain Python package (it never imports Django). The public API:

    inspect_model(path)              what a Keras model file is, read without running its code
    probe_video(path)                what a video is, enforcing limits (FFmpeg, hardened)
    preprocess_video(path, ...)      the model input made from a video, as the original tool did
    load_model_safely(path)          the Keras model, loaded only after inspect_model's checks
    compute_cams(model, x, ...)      raw CAMs of one input, every selected Conv3D layer at once
    run_analysis(model, video, AnalysisParams(...), out_dir) -> manifest (files + manifest.json)

Importing it has no side effects: TensorFlow is imported (with its environment set,
gradcam3d.tf) only by the calls that load and run a model, so `inspect` and `probe` start
fast and never load it. README.md ("Use the engine from Python") has an example; the command line
(`python -m gradcam3d ...`, gradcam3d.cli) is docs/engine-contract.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradcam3d.version import __version__

# Each public name and the module that defines it. They are imported on first use (PEP 562), so
# `import gradcam3d.classmap` (the class-map grammar, which the web app shares) loads nothing
# but that module and the standard library: no NumPy, OpenCV or TensorFlow.
_PUBLIC = {
    "AnalysisParams": "gradcam3d.params",
    "FusedCamResult": "gradcam3d.cam",
    "ModelRefused": "gradcam3d.errors",
    "PreprocessParams": "gradcam3d.preprocess",
    "PreprocessedClip": "gradcam3d.preprocess",
    "Refusal": "gradcam3d.errors",
    "VideoLimits": "gradcam3d.ffmpeg",
    "VideoRefused": "gradcam3d.errors",
    "compute_cams": "gradcam3d.cam",
    "inspect_model": "gradcam3d.modelcheck",
    "load_model_safely": "gradcam3d.loading",
    "parse_class_map": "gradcam3d.classmap",
    "preprocess_video": "gradcam3d.preprocess",
    "probe_video": "gradcam3d.video",
    "run_analysis": "gradcam3d.pipeline",
}

__all__ = [  # the names of _PUBLIC, written out so that tools can read them
    "__version__",
    "AnalysisParams",
    "FusedCamResult",
    "ModelRefused",
    "PreprocessParams",
    "PreprocessedClip",
    "Refusal",
    "VideoLimits",
    "VideoRefused",
    "compute_cams",
    "inspect_model",
    "load_model_safely",
    "parse_class_map",
    "preprocess_video",
    "probe_video",
    "run_analysis",
]

if TYPE_CHECKING:
    from gradcam3d.cam import FusedCamResult, compute_cams
    from gradcam3d.classmap import parse_class_map
    from gradcam3d.errors import ModelRefused, Refusal, VideoRefused
    from gradcam3d.ffmpeg import VideoLimits
    from gradcam3d.loading import load_model_safely
    from gradcam3d.modelcheck import inspect_model
    from gradcam3d.params import AnalysisParams
    from gradcam3d.pipeline import run_analysis
    from gradcam3d.preprocess import PreprocessedClip, PreprocessParams, preprocess_video
    from gradcam3d.video import probe_video


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'gradcam3d' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


if set(__all__) != {"__version__", *_PUBLIC}:  # pragma: no cover - a mistake in this file
    raise ImportError("gradcam3d.__all__ and gradcam3d._PUBLIC disagree")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
