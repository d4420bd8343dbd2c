"""Hot regions of a heatmap as per-frame bounding boxes (JSON-ready data).

Like the original tool: threshold each frame of the display-normalised map (Otsu's threshold by
default, or a fixed fraction of the map's maximum), then one box per connected component.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = dict[str, int]


@dataclass
class FrameRegions:
    boxes: list[Box]
    threshold: float  # in display units: fraction of the map's maximum, 0..1


def otsu_threshold(frame_heat: np.ndarray) -> float:
    """Otsu's threshold of a [0, 1] frame, in [0, 1] units; 0.0 for a flat frame."""
    heat_u8 = np.clip(np.rint(np.asarray(frame_heat, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if int(heat_u8.min()) == int(heat_u8.max()):
        return 1.0  # a flat frame has no hot region: nothing can be above it
    value, _ = cv2.threshold(heat_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(value) / 255.0


def boxes_from_mask(mask: np.ndarray, *, min_area: int = 1) -> list[Box]:
    """Bounding boxes of the 8-connected components of a boolean mask, largest first."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for label in range(1, count):  # 0 is the background
        x, y, w, h, area = (int(v) for v in stats[label])
        if area >= min_area:
            boxes.append({"x": x, "y": y, "w": w, "h": h, "area": area})
    boxes.sort(key=lambda box: (-box["area"], box["y"], box["x"]))
    return [{"x": b["x"], "y": b["y"], "w": b["w"], "h": b["h"]} for b in boxes]


def frame_regions(
    frame_heat: np.ndarray, *, threshold: float | None = None, min_area: int = 1
) -> FrameRegions:
    """Boxes of one [0, 1] frame; `threshold` None means Otsu's."""
    frame_heat = np.asarray(frame_heat, dtype=np.float32)
    value = otsu_threshold(frame_heat) if threshold is None else float(threshold)
    mask = frame_heat > value
    if not mask.any():
        return FrameRegions(boxes=[], threshold=value)
    return FrameRegions(boxes=boxes_from_mask(mask, min_area=min_area), threshold=value)


def map_regions(
    display_map: np.ndarray, *, threshold: float | None = None, min_area: int = 1
) -> list[FrameRegions]:
    """Per-frame regions of a display-normalised (T, H, W) map in [0, 1]."""
    if threshold is not None and not 0.0 <= float(threshold) < 1.0:
        raise ValueError("the box threshold is a fraction of the maximum: 0 <= threshold < 1")
    return [frame_regions(frame, threshold=threshold, min_area=min_area) for frame in np.asarray(display_map)]
