"""The one entry point: `run_analysis(model, video, params, out_dir, progress=cb) -> manifest`.

load safely -> preprocess -> one fused Grad-CAM run (it also gives the prediction) ->
upsample, regions -> render images, videos, inference maps, curves -> manifest.json (last,
atomically).

Importing this module never imports TensorFlow: run_analysis does, through gradcam3d.tf.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import gradcam3d.render as render
from gradcam3d.cam import (
    FusedCamResult,
    FusedGradCam,
    normalise_for_display,
    temporal_importance,
    upsample_trilinear,
)
from gradcam3d.errors import Refusal
from gradcam3d.ffmpeg import encode_video, encode_videos, ffmpeg_version
from gradcam3d.loading import build_probe, load_model_safely
from gradcam3d.manifest import (
    SCHEMA_VERSION,
    FileRecorder,
    engine_versions,
    input_record,
    save_npz_deterministic,
    write_manifest,
)
from gradcam3d.modelcheck import inspect_model
from gradcam3d.params import AnalysisParams
from gradcam3d.preprocess import PreprocessedClip, choose_scaling, preprocess_video
from gradcam3d.regions import map_regions
from gradcam3d.tf import import_keras, import_tensorflow

ProgressCallback = Callable[[str, float], None]
# Heatmap videos are short and small: encoding speed matters more than a few kilobytes.
VIDEO_PRESET = "ultrafast"
EventCallback = Callable[[dict[str, Any]], None]


def _probabilities(*, logits: np.ndarray, output_activation: str | None) -> np.ndarray:
    scores = logits.astype(np.float64)
    if output_activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-scores))
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


def _select_layers(*, available: list[str], requested: list[str] | None) -> list[str]:
    if not available:
        raise Refusal("The model has no Conv3D layer to explain.", code="no_conv3d")
    if requested is None:
        return list(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise Refusal(
            f"Unknown Conv3D layer(s): {', '.join(unknown)}; the model has: {', '.join(available)}.",
            code="bad_layers",
        )
    return [name for name in available if name in requested]  # model order


def _top_k(*, probabilities: np.ndarray, params: AnalysisParams) -> list[dict[str, Any]]:
    order = sorted(range(len(probabilities)), key=lambda i: (-float(probabilities[i]), i))
    return [
        {"class": int(i), "label": params.class_label(int(i)), "probability": float(probabilities[i])}
        for i in order[: params.top_k]
    ]


def _inference_frame_indices(*, frame_count: int, mode: str) -> list[int]:
    if mode == "all":
        return list(range(frame_count))
    return sorted({0, frame_count // 2, frame_count - 1})


def _frame_name(index: int, *, image_format: str) -> str:
    return f"{index:04d}.{'jpg' if image_format == 'jpeg' else 'png'}"


@dataclass
class _Plan:
    """What the cheap checks (model config, no TensorFlow) decided before any heavy work."""

    info: dict[str, Any]  # gradcam3d.modelcheck.inspect_model
    input_shape: list[int]
    selected: list[str]
    params: AnalysisParams  # the scaling chosen (never "auto")
    scaling: dict[str, str]  # gradcam3d.preprocess.choose_scaling: name, source, reason, suggested


def run_analysis(
    model_path: str | os.PathLike[str],
    video_path: str | os.PathLike[str],
    params: AnalysisParams | Mapping[str, Any] | None,
    out_dir: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    on_event: EventCallback | None = None,
) -> dict[str, Any]:
    """Explain one video with one model; write everything under `out_dir`; return the manifest.

    `params` is an AnalysisParams (a mapping is read with `AnalysisParams.from_dict`, None means
    every default). `progress(stage, fraction)` is called as the analysis advances; `on_event`
    receives `{"event": "prediction", ...}` as soon as the predicted class is known. Bad input
    raises `Refusal` with a sentence for the user. Without a preprocessing `scaling` (or with
    "auto") the model's inspection chooses it.
    """
    started = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    if not isinstance(params, AnalysisParams):
        params = AnalysisParams.from_dict(params)
    out_root = _fresh_out_dir(out_dir)

    # -- check everything cheap first: the model's config (no TensorFlow), classes, options ----
    report("loading model", 0.0)
    plan = _plan(params=params, info=inspect_model(model_path))

    # OpenCV's writers and FFmpeg release the GIL: two image threads keep both cores busy, and
    # a video thread feeds FFmpeg. The video is preprocessed (FFmpeg child processes) while this
    # thread loads the model and traces the Grad-CAM graph, which needs only the input shape.
    workers = _Workers()
    cancel = threading.Event()
    try:
        return _run_with_workers(
            workers,
            model_path=model_path,
            video_path=video_path,
            out_root=out_root,
            report=report,
            on_event=on_event,
            started=started,
            plan=plan,
            preprocess=_preprocess_job(video_path=video_path, plan=plan, cancel=cancel),
        )
    except BaseException:
        # A failure (a model that does not load, a refused video, an encoding error) ends the
        # analysis now: stop the preprocessing still running rather than wait for it.
        cancel.set()
        raise
    finally:
        # Then wait for the threads, so no FFmpeg child outlives the call.
        workers.shutdown()


def _fresh_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """The output folder, created if needed; refused if it already holds a finished analysis."""
    out_root = Path(out_dir)
    if (out_root / "manifest.json").exists():
        # Never overwrite a stored analysis piecemeal: a failure half-way would leave its
        # manifest describing files that no longer match.
        raise Refusal(
            "The output folder already holds a finished analysis; choose a new folder.", code="out_exists"
        )
    out_root.mkdir(parents=True, exist_ok=True)
    return out_root


def _preprocess_job(
    *, video_path: str | os.PathLike[str], plan: _Plan, cancel: threading.Event
) -> Callable[[], tuple[PreprocessedClip, float]]:
    """The timed preprocessing a worker thread runs while the model loads; `cancel` stops it."""
    return lambda: _timed(
        lambda: preprocess_video(
            video_path,
            input_shape=tuple(plan.input_shape),
            params=plan.params.preprocess,
            limits=plan.params.limits,
            cancel=cancel,
        )
    )


def _plan(*, params: AnalysisParams, info: dict[str, Any]) -> _Plan:
    """The checks that need the model's config, and the scaling it suggests.

    The scaling is recorded in the params by the name chosen (not "auto"), so the params alone
    re-run the same analysis even if a later inspection suggests otherwise.
    """
    num_classes = int(info["num_classes"])
    selected = _select_layers(
        available=list(info["conv3d_layers"]),
        requested=list(params.layers) if params.layers is not None else None,
    )
    expected = params.expected_class
    if expected is not None and not 0 <= expected < num_classes:
        raise Refusal(
            f"The expected class {expected} does not exist: this model has {num_classes} classes (0 to {num_classes - 1}).",
            code="bad_expected_class",
        )
    scaling = choose_scaling(requested=params.preprocess.scaling, inspection=info)
    return _Plan(
        info=info,
        input_shape=[int(d) for d in info["input_shape"]],
        selected=selected,
        params=params.with_scaling(scaling["name"]),
        scaling=scaling,
    )


class _Workers:
    def __init__(self) -> None:
        self.images = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gradcam3d-images")
        self.videos = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcam3d-videos")

    def shutdown(self) -> None:
        self.images.shutdown(wait=True, cancel_futures=True)
        self.videos.shutdown(wait=True, cancel_futures=True)


class _VideoBatch:
    """Heatmap videos collected and encoded several per FFmpeg process (`encode_videos`): a
    batch is sent once it holds BUDGET_BYTES of raw frames or MAX_CLIPS videos (one x264
    encoder each). Batches queue for the one video thread, and `encode_videos` copies a batch
    once more into FFmpeg's input, so memory grows with the number of layers."""

    BUDGET_BYTES = 96 * 1024 * 1024
    MAX_CLIPS = 16

    def __init__(self, workers: _Workers, pending: list[Future[Any]], *, fps: float) -> None:
        self.workers, self.pending, self.fps = workers, pending, fps
        self.clips: list[tuple[np.ndarray, Path]] = []
        self.size = 0

    def add(self, frames: np.ndarray, path: Path) -> None:
        self.clips.append((frames, path))
        self.size += frames.nbytes
        if self.size >= self.BUDGET_BYTES or len(self.clips) >= self.MAX_CLIPS:
            self.flush()

    def flush(self) -> None:
        if self.clips:
            self.pending.append(
                self.workers.videos.submit(encode_videos, self.clips, fps=self.fps, preset=VIDEO_PRESET)
            )
        self.clips, self.size = [], 0


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    mark = time.perf_counter()
    value = function()
    return value, time.perf_counter() - mark


def _run_with_workers(
    workers: _Workers,
    *,
    model_path: str | os.PathLike[str],
    video_path: str | os.PathLike[str],
    out_root: Path,
    report: ProgressCallback,
    on_event: EventCallback | None,
    started: float,
    plan: _Plan,
    preprocess: Callable[[], tuple[PreprocessedClip, float]],
) -> dict[str, Any]:
    # Every timing is a measured stage; the prediction has none of its own (it comes out of
    # the Grad-CAM forward pass, inside "gradcam").
    timings: dict[str, float] = {}
    clip_future = workers.images.submit(preprocess)
    probe, fused = _load_and_trace(
        model_path=model_path, plan=plan, clip_future=clip_future, started=started, timings=timings
    )

    report("preprocessing video", 0.1)
    preprocessed_path = out_root / "preprocessed.mp4"
    clip, display_frames, scale, preprocessed_video = _await_clip_and_encode_it(
        workers, clip_future=clip_future, plan=plan, path=preprocessed_path, timings=timings
    )

    report("computing Grad-CAM", 0.25)
    result, prediction, upsampled = _gradcam(
        fused=fused, probe=probe, clip=clip, plan=plan, on_event=on_event, timings=timings
    )

    report("rendering", 0.5)
    files, layer_entries = _render_layers(
        workers,
        plan=plan,
        out_root=out_root,
        preprocessed_path=preprocessed_path,
        display_frames=display_frames,
        scale=scale,
        result=result,
        upsampled=upsampled,
        prediction=prediction,
        report=report,
        timings=timings,
    )
    timings["render_preprocessed_video"] = preprocessed_video.result()[1]

    report("writing manifest", 0.97)
    manifest = _manifest(
        model_path=model_path,
        video_path=video_path,
        plan=plan,
        clip=clip,
        prediction=prediction,
        scale=scale,
        layers=layer_entries,
        files=files.finalise(),
    )
    return _finish(manifest=manifest, out_root=out_root, timings=timings, started=started, report=report)


def _await_clip_and_encode_it(
    workers: _Workers,
    *,
    clip_future: Future[tuple[PreprocessedClip, float]],
    plan: _Plan,
    path: Path,
    timings: dict[str, float],
) -> tuple[PreprocessedClip, np.ndarray, int, Future[tuple[Any, float]]]:
    """Wait for the preprocessed clip, scale it for display and start encoding it to `path`:
    (clip, display frames, display scale, the encoding's future)."""
    params = plan.params
    mark = time.perf_counter()
    clip, timings["preprocess"] = clip_future.result()
    timings["preprocess_wait"] = time.perf_counter() - mark
    scale = render.display_scale(height=plan.input_shape[1], min_height=params.display_min_height)
    display_frames = render.resize_frames(np.asarray(clip.frames_rgb, dtype=np.uint8), scale=scale)
    # Encoded while the Grad-CAM runs; its time is reported as "render_preprocessed_video".
    preprocessed_video = workers.videos.submit(
        _timed,
        lambda: encode_video(display_frames, path, fps=params.video_fps, preset=VIDEO_PRESET),
    )
    return clip, display_frames, scale, preprocessed_video


def _gradcam(
    *,
    fused: FusedGradCam,
    probe: Any,
    clip: PreprocessedClip,
    plan: _Plan,
    on_event: EventCallback | None,
    timings: dict[str, float],
) -> tuple[FusedCamResult, dict[str, Any], dict[int, list[np.ndarray]]]:
    """The timed "gradcam" stage: (raw maps result, prediction record, upsampled maps). The
    prediction is announced through `on_event` as soon as it is known, before upsampling."""
    mark = time.perf_counter()
    result, prediction = _predict_and_explain(
        fused=fused, clip=clip, plan=plan, output_activation=getattr(probe, "output_activation", None)
    )
    if on_event:
        on_event(
            {
                "event": "prediction",
                "predicted_class": result.predicted_class,
                "probabilities": prediction["probabilities"],
            }
        )
    upsampled = _upsampled(
        result=result,
        expected=plan.params.expected_class,
        size=(plan.input_shape[0], plan.input_shape[1], plan.input_shape[2]),
    )
    timings["gradcam"] = time.perf_counter() - mark
    return result, prediction, upsampled


def _render_layers(
    workers: _Workers,
    *,
    plan: _Plan,
    out_root: Path,
    preprocessed_path: Path,
    display_frames: np.ndarray,
    scale: int,
    result: FusedCamResult,
    upsampled: dict[int, list[np.ndarray]],
    prediction: dict[str, Any],
    report: ProgressCallback,
    timings: dict[str, float],
) -> tuple[FileRecorder, list[dict[str, Any]]]:
    """The timed "render" stage, every layer's files written when it returns: (the files
    recorded, the preprocessed video's included; the layers' manifest entries)."""
    mark = time.perf_counter()
    files = FileRecorder(root=out_root)
    files.add(preprocessed_path, role="preprocessed_video")
    renderer = _LayerRenderer(
        params=plan.params,
        out_root=out_root,
        files=files,
        workers=workers,
        pending=[],
        display_frames=display_frames,
        scale=scale,
        result=result,
        upsampled=upsampled,
        prediction=prediction,
    )
    entries = renderer.render_all(layers=plan.selected, report=report)
    timings["render"] = time.perf_counter() - mark
    return files, entries


def _finish(
    *,
    manifest: dict[str, Any],
    out_root: Path,
    timings: dict[str, float],
    started: float,
    report: ProgressCallback,
) -> dict[str, Any]:
    """Add the timings and write manifest.json: last, so a folder with one is complete."""
    timings["total"] = time.perf_counter() - started
    manifest["timings"] = {key: round(value, 4) for key, value in timings.items()}
    write_manifest(out_dir=out_root, manifest=manifest)
    report("done", 1.0)
    return manifest


def _load_and_trace(
    *,
    model_path: str | os.PathLike[str],
    plan: _Plan,
    clip_future: Future[Any],
    started: float,
    timings: dict[str, float],
) -> tuple[Any, FusedGradCam]:
    """Load the model and trace the fused graph (while the video is preprocessed): (probe, fused)."""
    import_tensorflow()
    model = load_model_safely(model_path)
    probe = build_probe(model, plan.selected)
    if clip_future.done():
        clip_future.result()  # model errors first; then a refused video, now rather than after tracing
    timings["load"] = time.perf_counter() - started
    mark = time.perf_counter()
    fused = FusedGradCam(probe=probe, method=plan.params.method, pooling=plan.params.pooling)
    fused.trace(np.zeros([1, *plan.input_shape], dtype=np.float32), expected_class=plan.params.expected_class)
    timings["trace"] = time.perf_counter() - mark
    return probe, fused


def _predict_and_explain(
    *,
    fused: FusedGradCam,
    clip: PreprocessedClip,
    plan: _Plan,
    output_activation: str | None,
) -> tuple[FusedCamResult, dict[str, Any]]:
    """One fused run, which gives the prediction too: (raw maps result, prediction record)."""
    params = plan.params
    expected = params.expected_class
    result = fused(clip.x, expected_class=expected)
    probabilities = _probabilities(
        logits=result.logits, output_activation=output_activation or plan.info.get("output_activation")
    )
    predicted = result.predicted_class
    prediction = {
        "probabilities": [float(p) for p in probabilities],
        "logits": [float(v) for v in result.logits],
        "predicted_class": predicted,
        "predicted_label": params.class_label(predicted),
        "expected_class": expected,
        "expected_label": None if expected is None else params.class_label(expected),
        "correct": None if expected is None else bool(expected == predicted),
        "top_k": _top_k(probabilities=probabilities, params=params),
    }
    return result, prediction


def _upsampled(
    *, result: FusedCamResult, expected: int | None, size: tuple[int, int, int]
) -> dict[int, list[np.ndarray]]:
    """Per class (the predicted one first), per layer: the raw map upsampled to (T, H, W)."""
    predicted = result.predicted_class
    classes = [predicted] + ([expected] if expected is not None and expected != predicted else [])
    return {k: [upsample_trilinear(raw, size=size) for raw in result.maps[k]] for k in classes}


@dataclass
class _LayerRenderer:
    """Writes each layer's files (heatmap video and frames, inference maps, heat curve, raw
    maps), records them, and returns the layer's manifest entry. Images and videos are
    written by the worker threads; `pending` collects their futures."""

    params: AnalysisParams
    out_root: Path
    files: FileRecorder
    workers: _Workers
    pending: list[Future[Any]]
    display_frames: np.ndarray
    scale: int
    result: FusedCamResult
    upsampled: dict[int, list[np.ndarray]]  # class -> per layer (T, H, W), predicted class first
    prediction: dict[str, Any]  # the manifest's prediction record (for its labels)
    videos: _VideoBatch = field(init=False)

    def __post_init__(self) -> None:
        self.videos = _VideoBatch(self.workers, self.pending, fps=self.params.video_fps)

    def render_all(self, *, layers: list[str], report: ProgressCallback) -> list[dict[str, Any]]:
        """Every layer's files, written when this returns; the layers' manifest entries."""
        self.legend()
        entries = []
        for position, layer_name in enumerate(layers):
            entries.append(self.layer(position=position, layer_name=layer_name))
            report("rendering", 0.5 + 0.45 * (position + 1) / len(layers))
        self.videos.flush()
        for future in self.pending:  # the first failure raises; run_analysis waits for the rest
            future.result()
        return entries

    @property
    def predicted(self) -> int:
        return int(self.result.predicted_class)

    @property
    def wrong(self) -> bool:
        expected = self.params.expected_class
        return expected is not None and expected != self.predicted

    def _image_path(self, folder: Path, index: int) -> Path:
        return folder / _frame_name(index, image_format=self.params.image_format)

    def _write_image(self, image: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.pending.append(
            self.workers.images.submit(render.write_image, image, path, image_format=self.params.image_format)
        )

    def legend(self) -> None:
        if not self.wrong:
            return
        legend_path = self.out_root / "inference_legend.png"
        legend = render.inference_legend(
            predicted_label=f"predicted class {self.predicted} ({self.prediction['predicted_label']})",
            expected_label=f"expected class {self.params.expected_class} ({self.prediction['expected_label']})",
        )
        render.write_image(legend, legend_path)
        self.files.add(legend_path, role="inference_legend")

    def layer(self, *, position: int, layer_name: str) -> dict[str, Any]:
        params, classes = self.params, list(self.upsampled)
        layer_dir = self.out_root / "layers" / f"{position:02d}"
        display_maps = {k: normalise_for_display(self.upsampled[k][position]) for k in classes}
        regions = {
            k: map_regions(display_maps[k], threshold=params.bbox_threshold, min_area=params.min_box_area)
            for k in classes
        }
        boxes = {k: [frame.boxes for frame in regions[k]] for k in classes}
        self._heatmaps(
            layer_dir=layer_dir,
            layer_name=layer_name,
            heat=display_maps[self.predicted],
            boxes=boxes[self.predicted],
        )
        if self.wrong:
            self._inference_maps(layer_dir=layer_dir, layer_name=layer_name, display_maps=display_maps)
        curves = {k: temporal_importance(self.upsampled[k][position]) for k in classes}
        self._curve(layer_dir=layer_dir, layer_name=layer_name, curves=curves)
        raw_path = self._raw_maps(layer_dir=layer_dir, layer_name=layer_name, position=position)
        return {
            "name": layer_name,
            "index": position,
            "activation_shape": [int(d) for d in self.result.activation_shapes[position]],
            "raw_max": {str(k): float(self.result.maps[k][position].max()) for k in classes},
            "temporal_importance": {str(k): curves[k] for k in classes},
            "boxes": {str(k): boxes[k] for k in classes},
            "threshold": {str(k): [float(frame.threshold) for frame in regions[k]] for k in classes},
            "raw_maps": {
                "path": raw_path.relative_to(self.out_root).as_posix(),
                "keys": {
                    str(k): {"raw": f"raw_class{k}", "upsampled": f"upsampled_class{k}"} for k in classes
                },
            },
        }

    def _heatmaps(self, *, layer_dir: Path, layer_name: str, heat: np.ndarray, boxes: list[Any]) -> None:
        scaled_heat = render.resize_frames(heat, scale=self.scale)
        overlays = render.draw_boxes(
            render.overlay_heat(
                self.display_frames, scaled_heat, colormap=self.params.colormap, alpha=self.params.alpha
            ),
            boxes,
            scale=self.scale,
        )
        heatmap_video_path = layer_dir / "heatmap.mp4"
        self.videos.add(overlays, heatmap_video_path)
        self.files.add(heatmap_video_path, role="heatmap_video", layer=layer_name, class_index=self.predicted)
        for index in range(len(overlays)):
            path = self._image_path(layer_dir / "frames", index)
            self._write_image(overlays[index], path)
            self.files.add(
                path, role="heatmap_image", layer=layer_name, frame=index, class_index=self.predicted
            )

    def _inference_maps(
        self, *, layer_dir: Path, layer_name: str, display_maps: dict[int, np.ndarray]
    ) -> None:
        frames_wanted = _inference_frame_indices(
            frame_count=len(self.display_frames), mode=self.params.inference_frames
        )
        expected = self.params.expected_class
        if expected is None:  # `layer` calls this only when `self.wrong`, i.e. with an expected class
            raise RuntimeError("inference maps need an expected class")
        difference = display_maps[self.predicted][frames_wanted] - display_maps[expected][frames_wanted]
        inference = render.overlay_difference(
            self.display_frames[frames_wanted], render.resize_frames(difference, scale=self.scale)
        )
        for row, index in enumerate(frames_wanted):
            path = self._image_path(layer_dir / "inference", index)
            self._write_image(inference[row], path)
            self.files.add(
                path, role="inference_map", layer=layer_name, frame=index, class_index=self.predicted
            )

    def _curve(self, *, layer_dir: Path, layer_name: str, curves: dict[int, list[float]]) -> None:
        curve_path = layer_dir / "temporal.png"
        curve_image = render.temporal_curve_image(
            {f"class {k} ({self.params.class_label(k)})": curves[k] for k in curves},
            title=f"Heat per frame: {layer_name}",
        )
        render.write_image(curve_image, curve_path)
        self.files.add(curve_path, role="temporal_curve", layer=layer_name)

    def _raw_maps(self, *, layer_dir: Path, layer_name: str, position: int) -> Path:
        raw_path = layer_dir / "raw_maps.npz"
        arrays = {}
        for k in self.upsampled:
            arrays[f"raw_class{k}"] = self.result.maps[k][position].astype(np.float32)
            arrays[f"upsampled_class{k}"] = self.upsampled[k][position].astype(np.float32)
        save_npz_deterministic(raw_path, arrays)
        self.files.add(raw_path, role="raw_maps", layer=layer_name)
        return raw_path


def _manifest(
    *,
    model_path: str | os.PathLike[str],
    video_path: str | os.PathLike[str],
    plan: _Plan,
    clip: PreprocessedClip,
    prediction: dict[str, Any],
    scale: int,
    layers: list[dict[str, Any]],
    files: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest, timings still empty (docs/engine-contract.md)."""
    info = plan.info
    return {
        "schema": SCHEMA_VERSION,
        "engine": engine_versions(),
        "inputs": {"model": input_record(model_path), "video": input_record(video_path)},
        "params": plan.params.to_dict(),
        "model": {
            "input_shape": plan.input_shape,
            "num_classes": int(info["num_classes"]),
            "conv3d_layers": list(info["conv3d_layers"]),
            "selected_layers": plan.selected,
            "output_activation": info.get("output_activation"),
        },
        "preprocess": {
            "source_frame_indices": [int(i) for i in clip.source_frame_indices],
            "timestamps": [float(t) for t in clip.timestamps],
            "source_fps": float(clip.source_fps) if clip.source_fps is not None else None,
            "source_frame_count": int(clip.source_frame_count),
            "decode_strategy": clip.decode_strategy,
            # What the model received and why: a model that rescales its own input must not
            # have it divided twice without anyone being able to tell.
            "scaling": {**plan.scaling, "input_range": clip.input_range()},
        },
        "prediction": prediction,
        "display": {
            "scale": scale,
            "box_coordinates": "model frame pixels (multiply by display scale for images)",
        },
        "layers": layers,
        "files": files,
        "timings": {},
    }


def warm_up_engine() -> None:
    """Import and start everything an analysis needs (TensorFlow's lazily created runtime
    included), so a warm worker's job clock starts with none of it left to do."""
    tf = import_tensorflow()
    import_keras()
    ffmpeg_version()  # cached: the manifest needs it
    # Build and differentiate a trivial graph once so TensorFlow's lazily created runtime
    # (thread pools, the function library) is up before the job's clock starts.
    x = tf.ones((1, 2, 2, 2, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tf.nn.conv3d(x, tf.ones((1, 1, 1, 1, 1)), strides=[1] * 5, padding="SAME"))
    tape.gradient(y, x)
