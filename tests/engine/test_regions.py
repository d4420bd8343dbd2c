"""Hot regions: Otsu (default) or a fixed fraction of the maximum, one box per component."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gradcam3d.regions import frame_regions, map_regions, otsu_threshold


def two_blob_frame() -> np.ndarray:
    frame = np.full((40, 60), 0.05, dtype=np.float32)
    frame[5:15, 10:20] = 1.0  # 10x10 hot blob
    frame[25:35, 40:55] = 0.8  # 10x15 warm blob
    return frame


def test_otsu_boxes_each_hot_blob_exactly() -> None:
    regions = frame_regions(two_blob_frame())
    assert regions.boxes == [{"x": 40, "y": 25, "w": 15, "h": 10}, {"x": 10, "y": 5, "w": 10, "h": 10}]
    assert 0.05 <= regions.threshold < 0.8


def test_fixed_threshold_keeps_only_regions_above_the_fraction() -> None:
    regions = frame_regions(two_blob_frame(), threshold=0.9)
    assert regions.boxes == [{"x": 10, "y": 5, "w": 10, "h": 10}]
    assert regions.threshold == pytest.approx(0.9)


def test_flat_and_all_zero_frames_have_no_boxes() -> None:
    assert frame_regions(np.zeros((8, 8), np.float32)).boxes == []
    assert frame_regions(np.full((8, 8), 0.5, np.float32)).boxes == []
    assert otsu_threshold(np.zeros((8, 8), np.float32)) == 1.0


def test_min_area_drops_specks() -> None:
    frame = two_blob_frame()
    frame[0, 0] = 1.0  # a one-pixel speck
    assert len(frame_regions(frame, threshold=0.5).boxes) == 3
    assert len(frame_regions(frame, threshold=0.5, min_area=4).boxes) == 2


def test_map_regions_are_per_frame_json_data() -> None:
    heat = np.stack([two_blob_frame(), np.zeros((40, 60), np.float32)])
    regions = map_regions(heat)
    payload = json.dumps([list(r.boxes) for r in regions])
    assert json.loads(payload)[1] == []
    assert len(json.loads(payload)[0]) == 2
    with pytest.raises(ValueError):
        map_regions(heat, threshold=1.5)
