"""Where two explanations of the same video disagree: the signed difference of two maps.

`python -m gradcam3d difference A.npz KEY_A B.npz KEY_B --out DIR` (gradcam3d.cli). The two
`.npz` files are `raw_maps.npz` of two analyses (docs/engine-contract.md): they were written by
an engine child that ran an untrusted model, so they are read here, in a sandboxed child, with
`allow_pickle=False`, and every array header is checked (name, dtype, rank, size) before a
byte of data is read, so a crafted file cannot make this process allocate more than the bound.

Each map is normalised to [0, 1] by its own maximum, exactly as the heatmaps are displayed
(`normalise_for_display`), and A - B in [-1, 1] is written as one PNG per frame in a diverging
colormap (red: A hotter, blue: B hotter, white: agreement), upscaled like the heatmap images,
with a legend image and per-frame statistics.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from gradcam3d import render
from gradcam3d.cam import normalise_for_display
from gradcam3d.errors import Refusal

# A key the engine writes for a model-input-sized map (gradcam3d.pipeline `_raw_maps`).
MAP_KEY = re.compile(r"^upsampled_class\d{1,5}$")
MAX_NPZ_BYTES = 1024 * 1024 * 1024
MAX_MAP_ELEMENTS = 64 * 1024 * 1024  # 256 MB of float32 per map
MAX_FRAMES = 4096
MAX_SIDE = 4096
DISPLAY_MIN_HEIGHT = 224  # as the heatmap images (gradcam3d.pipeline)
_ALLOWED_DTYPES = (np.dtype("<f4"), np.dtype("<f8"), np.dtype("<f2"))


class DifferenceRefused(Refusal):
    """The maps cannot be compared: unreadable, too large, missing or of different shapes."""


def _refuse(message: str, code: str = "bad_maps") -> DifferenceRefused:
    return DifferenceRefused(message, code=code)


def load_map(path: str | Path, key: str, *, label: str) -> np.ndarray:
    """One (T, H, W) float map from an `.npz`, checked before it is read."""
    if not MAP_KEY.match(key):
        raise _refuse(f"Map {label}: {key!r} is not the name of an upsampled map.", "bad_key")
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        raise _refuse(f"Map {label}: the file cannot be read.") from None
    if size > MAX_NPZ_BYTES:
        raise _refuse(f"Map {label}: the file is larger than {MAX_NPZ_BYTES // 2**20} MB.", "too_large")
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(f"{key}.npy")
            except KeyError:
                raise _refuse(f"Map {label}: the file has no map {key!r}.", "missing_key") from None
            if info.file_size > MAX_MAP_ELEMENTS * 8 + 4096:
                raise _refuse(f"Map {label}: the map is too large to compare.", "too_large")
            with archive.open(info) as member:
                return _read_checked_array(member, label=label)
    except zipfile.BadZipFile:
        raise _refuse(f"Map {label}: the file is not a valid .npz archive.") from None
    except (ValueError, EOFError, OSError) as exc:
        raise _refuse(f"Map {label}: the map cannot be read ({exc}).") from None


def _read_checked_array(member: Any, *, label: str) -> np.ndarray:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise _refuse(f"Map {label}: unsupported .npy version {version}.")
    if dtype not in _ALLOWED_DTYPES:
        raise _refuse(f"Map {label}: expected floating-point values, found {dtype}.")
    if len(shape) != 3 or not all(isinstance(side, int) and side > 0 for side in shape):
        raise _refuse(f"Map {label}: expected a (frames, height, width) map, found shape {shape}.")
    frames, height, width = shape
    if (
        frames > MAX_FRAMES
        or height > MAX_SIDE
        or width > MAX_SIDE
        or frames * height * width > MAX_MAP_ELEMENTS
    ):
        raise _refuse(f"Map {label}: a {frames}x{height}x{width} map is too large to compare.", "too_large")
    count = frames * height * width
    data = member.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise _refuse(f"Map {label}: the map's data is truncated.")
    array = np.frombuffer(data, dtype=dtype, count=count)
    array = array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)
    return np.asarray(array, dtype=np.float32)


def difference_legend(*, label_a: str, label_b: str, width: int = 420) -> np.ndarray:
    """A colour bar from -1 (blue, B hotter) through 0 (white) to +1 (red, A hotter)."""
    import cv2

    height = 118
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 20, width - 20, 36, 58
    ramp = render.diverging_lut()[np.linspace(0, 255, right - left).astype(np.uint8)]
    image[top:bottom, left:right] = ramp[None, :, :]
    cv2.rectangle(image, (left, top), (right - 1, bottom - 1), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(
        image, "A minus B (each scaled to its maximum)", (left, 24), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA
    )
    for text, x in (("-1", left), ("0", (left + right) // 2 - 4), ("+1", right - 18)):
        cv2.putText(image, text, (x, bottom + 14), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(
        image,
        render.ascii_text(f"blue: {label_b} hotter")[:60],
        (left, 92),
        font,
        0.42,
        (33, 102, 172),
        1,
        cv2.LINE_AA,
    )
    cv2.putText(
        image,
        render.ascii_text(f"red: {label_a} hotter")[:60],
        (left, 110),
        font,
        0.42,
        (178, 24, 43),
        1,
        cv2.LINE_AA,
    )
    return image


def difference_images(difference: np.ndarray) -> np.ndarray:
    """(T, H, W) in [-1, 1] -> (T, H', W', 3) uint8 RGB in the diverging colormap, upscaled."""
    indices = render.to_u8_index((np.clip(difference, -1.0, 1.0) + 1.0) / 2.0)
    colours = render.diverging_lut()[indices]
    scale = render.display_scale(height=int(difference.shape[1]), min_height=DISPLAY_MIN_HEIGHT)
    import cv2

    return render.resize_frames(colours, scale=scale, interpolation=cv2.INTER_NEAREST)


def compute_difference(
    a_path: str | Path,
    a_key: str,
    b_path: str | Path,
    b_key: str,
    *,
    out_dir: str | Path,
    label_a: str = "A",
    label_b: str = "B",
) -> dict[str, Any]:
    """Write `frames/NNNN.png` and `legend.png` into `out_dir`; return the contract's result."""
    map_a = load_map(a_path, a_key, label="A")
    map_b = load_map(b_path, b_key, label="B")
    if map_a.shape != map_b.shape:
        raise _refuse(
            f"The maps have different shapes ({'x'.join(map(str, map_a.shape))} and "
            f"{'x'.join(map(str, map_b.shape))}): only maps of the same video at the same size compare.",
            "shape_mismatch",
        )
    difference = normalise_for_display(map_a) - normalise_for_display(map_b)
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    names = []
    for index, image in enumerate(difference_images(difference)):
        name = f"frames/{index:04d}.png"
        render.write_image(image, out / name)
        names.append(name)
    render.write_image(difference_legend(label_a=label_a, label_b=label_b), out / "legend.png")
    magnitude = np.abs(difference)
    return {
        "shape": [int(side) for side in difference.shape],
        "frames": names,
        "legend": "legend.png",
        "mean_abs_per_frame": [round(float(value), 6) for value in magnitude.mean(axis=(1, 2))],
        "max_abs_per_frame": [round(float(value), 6) for value in magnitude.max(axis=(1, 2))],
        "mean_abs": round(float(magnitude.mean()), 6),
        "max_abs": round(float(magnitude.max()), 6),
    }
