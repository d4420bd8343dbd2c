"""The command line, `python -m gradcam3d {inspect,probe,transcode,preview,analyze,worker,difference,compare-maps}`.

All argument parsing lives here; the library modules only have functions. Every sub-command
prints JSON on its last stdout line (docs/engine-contract.md). On refusal it exits with status 2
and prints the one-line reason on stderr (and `{"ok": false, "error": ..., "code": ...}` on
stdout); an internal error exits with status 1. A handler `fn(args) -> dict` returns the JSON
result or raises `Refusal`. Nothing here imports TensorFlow at import time: `inspect` and
`probe` must start fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradcam3d.cam import CAM_METHODS, POOLINGS
from gradcam3d.classmap import class_map_entries, parse_class_map
from gradcam3d.errors import EXIT_INTERNAL_ERROR, EXIT_OK, EXIT_REFUSED, Refusal, VideoRefused
from gradcam3d.ffmpeg import VideoLimits
from gradcam3d.modelcheck import DEFAULT_MAX_MODEL_BYTES, inspect_model
from gradcam3d.params import IMAGE_FORMATS, AnalysisParams
from gradcam3d.pipeline import run_analysis, warm_up_engine
from gradcam3d.preprocess import (
    RESIZE_MODES,
    SCALING_AUTO,
    SCALINGS,
    PreprocessParams,
    PreprocessParamsRefused,
    preprocess_video,
    validate_input_shape,
    write_preview,
)
from gradcam3d.video import probe_video, transcode_for_browser

Handler = Callable[[argparse.Namespace], "dict[str, Any] | None"]
ProgressCallback = Callable[[str, float], None]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_handler(args.handler, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradcam3d", description="3D Grad-CAM engine")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_command in (
        _add_inspect,
        _add_probe,
        _add_transcode,
        _add_preview,
        _add_analyze,
        _add_worker,
        _add_difference,
    ):
        add_command(subparsers)
    _add_compare_maps(subparsers)
    return parser


def run_handler(handler: Handler, args: argparse.Namespace) -> int:
    """Run one command's handler with the contract's output and exit status."""
    try:
        result = handler(args)
    except Refusal as exc:
        message = " ".join(str(exc).split())
        emit({"ok": False, "error": message, "code": exc.code})
        sys.stderr.write(message + "\n")
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERNAL_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a child process
        traceback.print_exc(file=sys.stderr)
        emit({"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}", "code": "internal"})
        return EXIT_INTERNAL_ERROR
    if result is not None:
        emit({"ok": True, **result})
    return EXIT_OK


def emit(result: dict[str, Any]) -> None:
    """The final JSON line."""
    sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def emit_event(payload: dict[str, Any]) -> None:
    """A progress or prediction line, before the final one."""
    sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
    sys.stdout.flush()


def json_progress(stage: str, fraction: float) -> None:
    emit_event({"event": "progress", "stage": stage, "fraction": round(float(fraction), 4)})


class _BarProgress:
    """A tqdm bar on stderr (stdout stays one JSON line for callers)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, file=sys.stderr, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}]")

    def __call__(self, stage: str, fraction: float) -> None:
        self.bar.set_description(stage)
        self.bar.update(max(0.0, fraction * 100 - self.bar.n))
        if fraction >= 1.0:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# Shared options: video limits and preprocessing


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = VideoLimits()
    parser.add_argument("--max-bytes", type=int, default=defaults.max_bytes)
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds)
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels)
    parser.add_argument("--max-frames", type=int, default=defaults.max_frames)
    parser.add_argument(
        "--timeout", type=float, default=defaults.timeout_seconds, help="seconds allowed for probing"
    )
    parser.add_argument(
        "--processing-timeout",
        type=float,
        default=defaults.processing_timeout_seconds,
        help="seconds allowed for decoding or transcoding",
    )


def limits_from_args(args: argparse.Namespace) -> VideoLimits:
    values = {
        "max_bytes": args.max_bytes,
        "max_seconds": args.max_seconds,
        "max_pixels": args.max_pixels,
        "max_frames": args.max_frames,
        "timeout_seconds": args.timeout,
        "processing_timeout_seconds": args.processing_timeout,
    }
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise VideoRefused(
                f"The limit {name} must be a positive number, not {value!r}.", code="bad_limits"
            )
    return VideoLimits(**values)


def add_preprocess_arguments(parser: argparse.ArgumentParser, *, follow_model: bool = False) -> None:
    """The preprocessing options. `follow_model`: the command has a model, so --scaling may be
    "auto" (its default there): the scaling the model's inspection suggests."""
    defaults = PreprocessParams()
    parser.add_argument("--frame-stride", type=int, default=defaults.frame_stride)
    parser.add_argument("--frame-offset", type=int, default=defaults.frame_offset)
    parser.add_argument("--resize-mode", choices=RESIZE_MODES, default=defaults.resize_mode)
    if follow_model:
        parser.add_argument(
            "--scaling",
            choices=(SCALING_AUTO, *SCALINGS),
            default=SCALING_AUTO,
            help="default auto: what the model's input layers suggest",
        )
    else:
        parser.add_argument("--scaling", choices=SCALINGS, default=defaults.scaling)
    parser.add_argument("--mean", help="comma-separated, [0,1] units (scaling mean_std)")
    parser.add_argument("--std", help="comma-separated, [0,1] units (scaling mean_std)")


def preprocess_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing options as given (scaling may still be "auto"), numbers parsed."""

    def floats(text: str | None) -> list[float] | None:
        if text is None:
            return None
        try:
            return [float(part) for part in text.split(",")]
        except ValueError:
            raise PreprocessParamsRefused(
                f"Expected comma-separated numbers, not {text!r}.", code="bad_params"
            ) from None

    return {
        "frame_stride": args.frame_stride,
        "frame_offset": args.frame_offset,
        "resize_mode": args.resize_mode,
        "scaling": args.scaling,
        "mean": floats(args.mean),
        "std": floats(args.std),
    }


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise VideoRefused(
            f"--input-shape must be T,H,W,C integers, not {text!r}.", code="bad_shape"
        ) from None
    return validate_input_shape(values)


# ---------------------------------------------------------------------------------------------
# inspect, probe, transcode, preview


def _add_inspect(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="describe a Keras model file from its config, without running any of its code",
    )
    parser.add_argument("model", help="path of the .h5 or .keras file")
    parser.add_argument(
        "--max-bytes", type=int, default=None, help=f"file size limit (default {DEFAULT_MAX_MODEL_BYTES})"
    )
    parser.set_defaults(handler=lambda args: inspect_model(args.model, max_bytes=args.max_bytes))


def _add_probe(subparsers: Any) -> None:
    probe = subparsers.add_parser("probe", help="describe a video (JSON), enforcing limits")
    probe.add_argument("video")
    add_limit_arguments(probe)
    probe.set_defaults(handler=lambda args: probe_video(args.video, limits=limits_from_args(args)))


def _add_transcode(subparsers: Any) -> None:
    transcode = subparsers.add_parser("transcode", help="browser-playable H.264 MP4 and a JPEG poster")
    transcode.add_argument("video")
    transcode.add_argument("--out", required=True)
    transcode.add_argument("--poster", required=True)
    transcode.add_argument("--max-height", type=int, default=720)
    add_limit_arguments(transcode)
    transcode.set_defaults(handler=_transcode_command)


def _transcode_command(args: argparse.Namespace) -> dict[str, Any]:
    return transcode_for_browser(
        args.video,
        out_mp4=args.out,
        poster_jpg=args.poster,
        limits=limits_from_args(args),
        max_height=args.max_height,
    )


def _add_preview(subparsers: Any) -> None:
    preview = subparsers.add_parser("preview", help="the T model frames as an MP4, with their source indices")
    preview.add_argument("video")
    preview.add_argument("--input-shape", required=True, help="T,H,W,C")
    preview.add_argument("--out", required=True, help="directory for preview.mp4")
    add_preprocess_arguments(preview)
    add_limit_arguments(preview)
    preview.set_defaults(handler=_preview_command)


def _preview_command(args: argparse.Namespace) -> dict[str, Any]:
    clip = preprocess_video(
        args.video,
        input_shape=parse_input_shape(args.input_shape),
        params=PreprocessParams.from_dict(preprocess_options_from_args(args)),
        limits=limits_from_args(args),
    )
    out = write_preview(clip, out_dir=args.out)
    # The scaling and the range of values the model would receive, so the page can say
    # "the model receives values in [0, 255]" next to the frames.
    return {
        "clip": str(out),
        **clip.summary(),
        "params": clip.params.to_dict(),
        "input_shape": list(clip.x.shape[1:]),
        "scaling": clip.params.scaling,
        "input_range": clip.input_range(),
    }


# ---------------------------------------------------------------------------------------------
# analyze and worker


def _add_analyze(subparsers: Any) -> None:
    defaults = AnalysisParams()
    parser = subparsers.add_parser("analyze", help="run Grad-CAM on every Conv3D layer for one video")
    parser.add_argument("model")
    parser.add_argument("video")
    parser.add_argument("--out", required=True, help="output folder (manifest.json and files)")
    parser.add_argument("--expected-class", type=int, default=defaults.expected_class)
    parser.add_argument(
        "--layers", nargs="+", default=None, help="full paths of Conv3D layers (default: all)"
    )
    parser.add_argument("--method", default=defaults.method, choices=list(CAM_METHODS))
    parser.add_argument(
        "--pooling",
        default=defaults.pooling,
        choices=list(POOLINGS),
        help="gradient pooling of gradcam and gradcam++; layercam and hirescam have none "
        "(global is recorded as none, temporal is refused)",
    )
    parser.add_argument(
        "--bbox-threshold", type=float, default=None, help="fraction of the maximum (default: Otsu)"
    )
    parser.add_argument("--colormap", default=defaults.colormap)
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument(
        "--fps", type=float, default=defaults.video_fps, help="frame rate of the heatmap videos"
    )
    parser.add_argument("--image-format", default=defaults.image_format, choices=list(IMAGE_FORMATS))
    parser.add_argument("--all-inference-frames", action="store_true")
    parser.add_argument(
        "--labels",
        default=None,
        help="class map: 'index: label' lines (also index=label, index,label, index<TAB>label) "
        "or one label per line",
    )
    parser.add_argument("--progress-json", action="store_true", help="progress as JSON lines on stdout")
    add_preprocess_arguments(parser, follow_model=True)  # --scaling auto by default: the model's suggestion
    add_limit_arguments(parser)
    parser.set_defaults(handler=_analyze_command)


def _analyze_command(args: argparse.Namespace) -> dict[str, Any]:
    params = _analysis_params_from_args(args)
    if args.progress_json:
        progress: ProgressCallback = json_progress
        on_event: Callable[[dict[str, Any]], None] | None = emit_event
    else:
        progress = _BarProgress()
        on_event = None
    run_analysis(args.model, args.video, params, args.out, progress=progress, on_event=on_event)
    return {"manifest": str(Path(args.out).resolve() / "manifest.json")}


def _analysis_params_from_args(args: argparse.Namespace) -> AnalysisParams:
    options: dict[str, Any] = {
        "expected_class": args.expected_class,
        "layers": args.layers,
        "method": args.method,
        "pooling": args.pooling,
        "bbox_threshold": args.bbox_threshold,
        "colormap": args.colormap,
        "alpha": args.alpha,
        "top_k": args.top_k,
        "video_fps": args.fps,
        "image_format": args.image_format,
        "inference_frames": "all" if args.all_inference_frames else "key",
        "preprocess": preprocess_options_from_args(args),
        "limits": limits_from_args(args).to_dict(),
    }
    if args.labels:
        options["class_labels"] = _labels_from_file(path=args.labels, model_path=args.model)
    return AnalysisParams.from_dict(options)


def _labels_from_file(*, path: str, model_path: str) -> list[str]:
    """The class map file's labels, one per class of the model (the web page's grammar)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Refusal(f"Cannot read the class map: {exc}.", code="bad_labels") from None
    class_map_entries(text)  # a malformed map is refused before the model is even read
    return parse_class_map(text, num_classes=int(inspect_model(model_path)["num_classes"]))


def _add_worker(subparsers: Any) -> None:
    worker = subparsers.add_parser(
        "worker", help="warm engine: import TensorFlow, then run one job from stdin"
    )
    worker.set_defaults(handler=_worker_command)


def _worker_command(args: argparse.Namespace) -> dict[str, Any]:
    """A warm engine: TensorFlow imported before any job arrives, then exactly one job."""
    warm_up_engine()
    emit_event({"event": "ready"})
    job = _read_job(sys.stdin.readline())
    params = AnalysisParams.from_dict(job.get("params") or {})
    run_analysis(job["model"], job["video"], params, job["out"], progress=json_progress, on_event=emit_event)
    return {"manifest": str(Path(job["out"]).resolve() / "manifest.json")}


def _read_job(line: str) -> dict[str, Any]:
    """The worker's one job line: {"model", "video", "out", "params"}, checked."""
    if not line.strip():
        raise Refusal("The worker received no job.", code="no_job")
    try:
        job = json.loads(line)
    except ValueError:
        raise Refusal("The worker's job line is not valid JSON.", code="bad_job") from None
    if not isinstance(job, dict) or not all(
        isinstance(job.get(key), str) for key in ("model", "video", "out")
    ):
        raise Refusal("The worker's job needs 'model', 'video' and 'out' paths.", code="bad_job")
    if not isinstance(job.get("params") or {}, dict):
        raise Refusal("The worker's job 'params' must be an object.", code="bad_job")
    return job


# ---------------------------------------------------------------------------------------------
# difference (the comparison page's difference row)


def _add_difference(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "difference", help="signed difference of two maps of the same shape, as images and a legend"
    )
    parser.add_argument("a_npz", help="raw_maps.npz of the first analysis")
    parser.add_argument("a_key", help="its map, e.g. upsampled_class3")
    parser.add_argument("b_npz", help="raw_maps.npz of the second analysis")
    parser.add_argument("b_key", help="its map")
    parser.add_argument("--out", required=True, help="output folder (frames/NNNN.png, legend.png)")
    parser.add_argument("--label-a", default="A", help="what A is, for the legend")
    parser.add_argument("--label-b", default="B", help="what B is, for the legend")
    parser.set_defaults(handler=_difference_command)


def _difference_command(args: argparse.Namespace) -> dict[str, Any]:
    from gradcam3d.difference import compute_difference

    return compute_difference(
        args.a_npz,
        args.a_key,
        args.b_npz,
        args.b_key,
        out_dir=args.out,
        label_a=str(args.label_a)[:60],
        label_b=str(args.label_b)[:60],
    )


# compare-maps (verifying a past analysis)


def _add_compare_maps(subparsers: Any) -> None:
    from gradcam3d import mapcompare

    parser = subparsers.add_parser(
        "compare-maps", help="compare two raw_maps.npz files array by array (A is the reference)"
    )
    parser.add_argument("a", help="the reference .npz (the stored maps)")
    parser.add_argument("b", help="the .npz to compare with it (a re-run's maps)")
    parser.add_argument("--max-bytes", type=int, default=mapcompare.DEFAULT_MAX_FILE_BYTES)
    parser.add_argument("--max-arrays", type=int, default=mapcompare.DEFAULT_MAX_ARRAYS)
    parser.add_argument("--max-elements", type=int, default=mapcompare.DEFAULT_MAX_ARRAY_ELEMENTS)
    parser.set_defaults(handler=_compare_maps_command)


def _compare_maps_command(args: argparse.Namespace) -> dict[str, Any]:
    from gradcam3d.mapcompare import compare_map_files

    return compare_map_files(
        args.a, args.b, max_bytes=args.max_bytes, max_arrays=args.max_arrays, max_elements=args.max_elements
    )
