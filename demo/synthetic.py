"""A deterministic synthetic action dataset: one moving shape on a textured background.

Each clip shows ONE object (a filled square or disc in a random colour) whose motion is the
class: moving right/left/up/down, growing, shrinking. The background is a static, mildly
noisy texture and a static distractor shape may be present; neither carries class evidence,
so an honest explanation (Grad-CAM) should point at the moving object. The generator knows
the object's tight bounding box in every frame, which the engine's pointing-game tests use.

Motion is a continuous function of normalised time t in [0, 1] and of the frame size, so the
same clip can be rendered at any resolution and at any subset of time points: the demo
renders full-length 128x128 videos, while the training set renders only the frames the
engine's preprocessing would keep from such a video (`engine_source_indices`), directly, and
resizes them as the engine does. NumPy/OpenCV only (no TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Bump when the rendering changes in any way that alters pixels or boxes: a cached demo
# made by another version is then rebuilt.
GENERATOR_VERSION = 3

CLASS_NAMES: tuple[str, ...] = (
    "moving right",
    "moving left",
    "moving up",
    "moving down",
    "growing",
    "shrinking",
)

# The demo videos: source resolution, length, and the engine default that turns them into
# model input (keep every 2nd frame starting at index 1, then T evenly spaced).
SOURCE_SIZE = 128
SOURCE_FRAMES = 48
SOURCE_FPS = 25.0
ENGINE_FRAME_STRIDE = 2


@dataclass(frozen=True)
class Clip:
    """`frames` uint8 RGB (N, H, W, 3); `boxes` int32 (N, 4) as (x, y, w, h) in pixels."""

    frames: np.ndarray
    boxes: np.ndarray
    class_index: int


@dataclass(frozen=True)
class ClipSpec:
    """Everything random about a clip, drawn once; rendering is then a pure function.

    Lengths are fractions of the frame side, so a spec renders the same scene at any size.
    """

    class_index: int
    shape: str  # "square" or "disc"
    colour: tuple[int, int, int]
    start_centre: tuple[float, float]  # (x, y) at t = 0
    end_centre: tuple[float, float]  # (x, y) at t = 1
    start_size: float  # side (square) or diameter (disc) at t = 0
    end_size: float
    background_seed: int
    background_tint: tuple[int, int, int]
    distractor: tuple[str, tuple[int, int, int], tuple[float, float], float] | None
    noise_sigma: float


def _contrasting_colour(*, rng: np.random.Generator, against: tuple[int, int, int]) -> tuple[int, int, int]:
    # Saturated colours far from the (greyish) background so the object is always visible.
    while True:
        colour = rng.integers(0, 256, size=3)
        colour[rng.integers(0, 3)] = rng.integers(200, 256)
        if np.abs(colour - np.array(against)).sum() > 220:
            return (int(colour[0]), int(colour[1]), int(colour[2]))


def draw_spec(*, class_index: int, rng: np.random.Generator) -> ClipSpec:
    """Draw the random parameters of one clip of class `class_index`."""
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ValueError(f"class_index must be in [0, {len(CLASS_NAMES)}), got {class_index}")
    name = CLASS_NAMES[class_index]
    tint_base = int(rng.integers(70, 150))
    tint = tuple(int(np.clip(tint_base + rng.integers(-25, 26), 0, 255)) for _ in range(3))
    colour = _contrasting_colour(rng=rng, against=tint)  # type: ignore[arg-type]
    shape = "square" if rng.random() < 0.5 else "disc"
    if name.startswith("moving"):
        size = float(rng.uniform(0.26, 0.34))
        start_size = end_size = size
        # Slow enough that the object moves less than its own size over a few model frames:
        # a Conv3D unit sees several frames, so faster motion smears the evidence (and the
        # Grad-CAM heat) along the path, away from the object's current box.
        travel = float(rng.uniform(0.24, 0.34))
        margin = size / 2 + 0.04
        along_start = float(rng.uniform(margin, 1 - margin - travel))
        across = float(rng.uniform(margin, 1 - margin))
        drift = float(rng.uniform(-0.05, 0.05))  # slight sideways drift: not a perfect line
        forward = (along_start, along_start + travel)
        if name in ("moving left", "moving up"):
            forward = (forward[1], forward[0])
        if name in ("moving right", "moving left"):
            start_centre = (forward[0], across)
            end_centre = (forward[1], float(np.clip(across + drift, margin, 1 - margin)))
        else:
            start_centre = (across, forward[0])
            end_centre = (float(np.clip(across + drift, margin, 1 - margin)), forward[1])
    else:
        small = float(rng.uniform(0.12, 0.16))
        large = float(rng.uniform(0.36, 0.46))
        start_size, end_size = (small, large) if name == "growing" else (large, small)
        margin = large / 2 + 0.03
        centre = (float(rng.uniform(margin, 1 - margin)), float(rng.uniform(margin, 1 - margin)))
        start_centre = end_centre = centre
    distractor = None
    if rng.random() < 0.5:
        distractor_colour = _contrasting_colour(rng=rng, against=tint)  # type: ignore[arg-type]
        distractor = (
            "disc" if shape == "square" else "square",
            distractor_colour,
            (float(rng.uniform(0.12, 0.88)), float(rng.uniform(0.12, 0.88))),
            float(rng.uniform(0.12, 0.2)),
        )
    return ClipSpec(
        class_index=class_index,
        shape=shape,
        colour=colour,
        start_centre=start_centre,
        end_centre=end_centre,
        start_size=start_size,
        end_size=end_size,
        background_seed=int(rng.integers(0, 2**31 - 1)),
        background_tint=tint,  # type: ignore[arg-type]
        distractor=distractor,
        noise_sigma=float(rng.uniform(2.0, 6.0)),
    )


def _background(*, spec: ClipSpec, size: int) -> np.ndarray:
    # Smooth blobs (low-resolution noise stretched up) plus fine grain: a texture, static.
    rng = np.random.default_rng(spec.background_seed)
    coarse = rng.normal(0.0, 18.0, size=(6, 6, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 6.0, size=(size, size, 3)).astype(np.float32)
    base = np.array(spec.background_tint, dtype=np.float32)
    return np.clip(base + smooth + grain, 0, 255).astype(np.float32)


def _shape_box(*, centre: tuple[float, float], extent: float, size: int) -> tuple[int, int, int, int]:
    """Integer pixel box (x0, y0, x1, y1), inclusive, of a shape of side `extent` (fraction)."""
    half = max(1, int(round(extent * size / 2)))
    cx, cy = int(round(centre[0] * size)), int(round(centre[1] * size))
    return cx - half, cy - half, cx + half - 1, cy + half - 1


def _draw_shape(
    *, image: np.ndarray, shape: str, colour: tuple[int, int, int], box: tuple[int, int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    if shape == "square":
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness=-1, lineType=cv2.LINE_8)
    else:
        # A disc covering exactly the box: mask by distance from the box centre.
        height, width = image.shape[:2]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        radius = (x1 - x0 + 1) / 2
        ys = np.arange(max(0, y0), min(height, y1 + 1))
        xs = np.arange(max(0, x0), min(width, x1 + 1))
        if len(ys) == 0 or len(xs) == 0:
            return
        inside = (xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2 <= radius**2
        region = image[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
        region[inside] = colour


def object_state(*, spec: ClipSpec, t: float) -> tuple[tuple[float, float], float]:
    """Centre (x, y) and extent of the moving object at normalised time t (fractions)."""
    centre = (
        spec.start_centre[0] + (spec.end_centre[0] - spec.start_centre[0]) * t,
        spec.start_centre[1] + (spec.end_centre[1] - spec.start_centre[1]) * t,
    )
    return centre, spec.start_size + (spec.end_size - spec.start_size) * t


def render_spec(*, spec: ClipSpec, times: np.ndarray, size: int, include_object: bool = True) -> Clip:
    """Render `spec` at normalised times `times` as size x size RGB frames with boxes.

    Per-frame noise depends only on the spec and the time, so rendering with
    `include_object=False` gives exactly the same pixels minus the object (tests use it).
    """
    background = _background(spec=spec, size=size)
    if spec.distractor is not None:
        d_shape, d_colour, d_centre, d_extent = spec.distractor
        _draw_shape(
            image=background,
            shape=d_shape,
            colour=d_colour,
            box=_shape_box(centre=d_centre, extent=d_extent, size=size),
        )
    frames = np.empty((len(times), size, size, 3), dtype=np.uint8)
    boxes = np.empty((len(times), 4), dtype=np.int32)
    for index, t in enumerate(np.asarray(times, dtype=np.float64)):
        noise_rng = np.random.default_rng([spec.background_seed, int(round(float(t) * 1_000_000))])
        frame = background + noise_rng.normal(0.0, spec.noise_sigma, size=(size, size, 1)).astype(np.float32)
        frame = np.clip(frame, 0, 255)
        centre, extent = object_state(spec=spec, t=float(t))
        box = _shape_box(centre=centre, extent=extent, size=size)
        if include_object:
            _draw_shape(image=frame, shape=spec.shape, colour=spec.colour, box=box)
        frames[index] = frame.astype(np.uint8)
        x0, y0 = max(0, box[0]), max(0, box[1])
        x1, y1 = min(size - 1, box[2]), min(size - 1, box[3])
        boxes[index] = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    return Clip(frames=frames, boxes=boxes, class_index=spec.class_index)


def make_clip(*, class_index: int, rng: np.random.Generator, frames: int, size: int) -> Clip:
    """A clip of `frames` frames (t evenly from 0 to 1) of size x size pixels."""
    if frames < 2:
        raise ValueError("a clip needs at least 2 frames")
    spec = draw_spec(class_index=class_index, rng=rng)
    return render_spec(spec=spec, times=np.linspace(0.0, 1.0, frames), size=size)


def engine_source_indices(
    *, source_frame_count: int, frames: int, stride: int = ENGINE_FRAME_STRIDE
) -> np.ndarray:
    """The source frame indices the engine's default preprocessing feeds the model.

    Keep every `stride`-th decoded frame starting from index stride-1 (the original tool's
    1, 3, 5, ...), then pick `frames` of them evenly with linspace, truncated to integers.
    """
    kept = np.arange(stride - 1, source_frame_count, stride)
    if len(kept) == 0:
        raise ValueError("no frames left after the stride")
    picks = np.linspace(0, len(kept) - 1, frames).astype(int)
    return kept[picks]


def resize_boxes(*, boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes (x, y, w, h) in source pixels -> float32 boxes in pixels of a resized frame."""
    return (np.asarray(boxes, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def make_dataset(
    *,
    n_per_class: int,
    frames: int,
    size: int,
    seed: int,
    source_frames: int = SOURCE_FRAMES,
    source_size: int = SOURCE_SIZE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training data exactly as the engine would see the demo videos.

    Each sample is rendered at `source_size` only at the source frames the engine keeps
    from a `source_frames`-frame video, then stretched to size x size with INTER_AREA and
    scaled to [0, 1]. Returns x float32 (n, frames, size, size, 3), y int64 (n,), and boxes
    float32 (n, frames, 4) as (x, y, w, h) in model pixels. Classes are interleaved.
    """
    rng = np.random.default_rng(seed)
    indices = engine_source_indices(source_frame_count=source_frames, frames=frames)
    times = indices / (source_frames - 1)
    count = n_per_class * len(CLASS_NAMES)
    x = np.empty((count, frames, size, size, 3), dtype=np.float32)
    y = np.empty((count,), dtype=np.int64)
    boxes = np.empty((count, frames, 4), dtype=np.float32)
    for sample in range(count):
        class_index = sample % len(CLASS_NAMES)
        clip = render_spec(spec=draw_spec(class_index=class_index, rng=rng), times=times, size=source_size)
        for frame_index, frame in enumerate(clip.frames):
            x[sample, frame_index] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        y[sample] = class_index
        boxes[sample] = resize_boxes(boxes=clip.boxes, scale=size / source_size)
    x /= 255.0
    return x, y, boxes
