"""Vectorised rendering: colormap blending, boxes, diverging inference colours, images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gradcam3d import render


def test_overlay_is_the_alpha_blend_of_frame_and_jet_colour() -> None:
    frames = np.full((2, 4, 5, 3), 100, dtype=np.uint8)
    heat = np.zeros((2, 4, 5), dtype=np.float32)
    heat[1, 2, 3] = 1.0
    out = render.overlay_heat(frames, heat, colormap="jet", alpha=0.3)
    jet_bgr = cv2.applyColorMap(np.array([[0, 255]], dtype=np.uint8), cv2.COLORMAP_JET)[0]
    cold, hot = jet_bgr[0][::-1].astype(float), jet_bgr[1][::-1].astype(float)
    np.testing.assert_array_equal(out[0, 0, 0], np.rint(0.7 * 100 + 0.3 * cold).astype(np.uint8))
    np.testing.assert_array_equal(out[1, 2, 3], np.rint(0.7 * 100 + 0.3 * hot).astype(np.uint8))
    assert out.dtype == np.uint8 and out.shape == frames.shape


def test_overlay_of_a_whole_clip_matches_the_float_blend_within_one_level() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, 9, 11, 3), dtype=np.uint8)
    heat = rng.random((4, 9, 11)).astype(np.float32)
    out = render.overlay_heat(frames, heat, colormap="viridis", alpha=0.45)
    colours = render.colormap_lut("viridis")[render.to_u8_index(heat)].astype(np.float64)
    exact = 0.55 * frames.astype(np.float64) + 0.45 * colours
    assert np.abs(out.astype(np.float64) - exact).max() <= 0.5 + 1e-3  # rounded, never off by more


def test_difference_overlay_of_a_clip_matches_the_float_blend_within_one_level() -> None:
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, (3, 7, 9, 3), dtype=np.uint8)
    difference = (rng.random((3, 7, 9)) * 2.4 - 1.2).astype(np.float32)  # beyond [-1, 1] too
    out = render.overlay_difference(frames, difference, max_alpha=0.7)
    clipped = np.clip(difference, -1.0, 1.0)
    colours = render.diverging_lut()[render.to_u8_index((clipped + 1.0) / 2.0)].astype(np.float64)
    weight = (0.7 * np.abs(clipped.astype(np.float64)))[..., None]
    exact = (1.0 - weight) * frames.astype(np.float64) + weight * colours
    assert np.abs(out.astype(np.float64) - exact).max() <= 0.5 + 1e-3


def test_alpha_zero_leaves_the_frame_untouched() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    heat = np.random.default_rng(1).random((3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(render.overlay_heat(frames, heat, alpha=0.0), frames)


def test_unknown_colormap_is_refused() -> None:
    with pytest.raises(ValueError):
        render.colormap_lut("not-a-map")


def test_boxes_are_drawn_red_at_display_scale() -> None:
    frames = np.zeros((1, 20, 20, 3), dtype=np.uint8)
    out = render.draw_boxes(frames, [[{"x": 2, "y": 3, "w": 4, "h": 5}]], scale=2)
    assert tuple(out[0, 6, 4]) == (255, 0, 0)  # top-left corner (x=4, y=6)
    assert tuple(out[0, 6 + 9, 4 + 7]) == (255, 0, 0)  # bottom-right corner
    assert out[0, 10, 8].sum() == 0  # the inside stays untouched
    assert frames.sum() == 0  # the input is not modified


def test_difference_overlay_is_red_for_predicted_blue_for_expected_and_clear_where_equal() -> None:
    frames = np.full((1, 1, 3, 3), 128, dtype=np.uint8)
    difference = np.array([[[1.0, 0.0, -1.0]]], dtype=np.float32)
    out = render.overlay_difference(frames, difference)
    red, neutral, blue = out[0, 0]
    assert red[0] > red[2] and blue[2] > blue[0]
    np.testing.assert_array_equal(neutral, [128, 128, 128])


def test_legend_and_curve_images_draw_even_non_ascii_labels(tmp_path) -> None:
    legend = render.inference_legend(predicted_label="Basketball", expected_label="Schwimmen \u00fc\u6f22")
    curve = render.temporal_curve_image(
        {"class 1": [0.0, 1.0, 0.5], "class 2": [0.0, 0.0, 0.0]}, title="conv1"
    )
    for name, image in (("legend.png", legend), ("curve.jpg", curve)):
        path = render.write_image(
            image, tmp_path / name, image_format="jpeg" if name.endswith("jpg") else "png"
        )
        assert cv2.imread(str(path)).shape == image.shape


def test_display_scale_upscales_small_frames_by_an_integer_factor() -> None:
    assert render.display_scale(height=112, min_height=224) == 2
    assert render.display_scale(height=32, min_height=224) == 7
    assert render.display_scale(height=480, min_height=224) == 1
    frames = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    assert render.resize_frames(frames, scale=3).shape == (2, 9, 12, 3)
