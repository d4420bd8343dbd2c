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

from gradcam3d.cam import FusedCamResult, compute_cams
from gradcam3d.classmap import parse_class_map
from gradcam3d.errors import ModelRefused, Refusal, VideoRefused
from gradcam3d.ffmpeg import VideoLimits
from gradcam3d.loading import load_model_safely
from gradcam3d.modelcheck import inspect_model
from gradcam3d.params import AnalysisParams
from gradcam3d.pipeline import run_analysis
from gradcam3d.preprocess import PreprocessedClip, PreprocessParams, preprocess_video
from gradcam3d.version import __version__
from gradcam3d.video import probe_video

__all__ = [
    "AnalysisParams",
    "FusedCamResult",
    "ModelRefused",
    "PreprocessParams",
    "PreprocessedClip",
    "Refusal",
    "VideoLimits",
    "VideoRefused",
    "__version__",
    "compute_cams",
    "inspect_model",
    "load_model_safely",
    "parse_class_map",
    "preprocess_video",
    "probe_video",
    "run_analysis",
]
