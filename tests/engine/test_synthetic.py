"""The synthetic action generator: deterministic, boxes that really bound the object, classes
that differ only by the object's motion, and frames chosen like the engine's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from demo import synthetic

SEEDS = range(6)


def test_same_seed_gives_identical_dataset_and_other_seed_differs() -> None:
    first = synthetic.make_dataset(n_per_class=2, frames=8, size=24, seed=5, source_size=64)
    again = synthetic.make_dataset(n_per_class=2, frames=8, size=24, seed=5, source_size=64)
    other = synthetic.make_dataset(n_per_class=2, frames=8, size=24, seed=6, source_size=64)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_make_clip_is_a_function_of_the_rng_state() -> None:
    clip_a = synthetic.make_clip(class_index=2, rng=np.random.default_rng(11), frames=10, size=64)
    clip_b = synthetic.make_clip(class_index=2, rng=np.random.default_rng(11), frames=10, size=64)
    np.testing.assert_array_equal(clip_a.frames, clip_b.frames)
    np.testing.assert_array_equal(clip_a.boxes, clip_b.boxes)
    assert clip_a.frames.dtype == np.uint8 and clip_a.frames.shape == (10, 64, 64, 3)
    assert clip_a.boxes.shape == (10, 4) and clip_a.class_index == 2


@pytest.mark.parametrize("class_index", range(len(synthetic.CLASS_NAMES)))
def test_box_is_the_tight_bound_of_the_object_pixels(class_index: int) -> None:
    # Rendering the same scene without the object leaves every pixel but the object's
    # identical, so the difference is the object's exact mask.
    times = np.linspace(0.0, 1.0, 12)
    for seed in SEEDS:
        spec = synthetic.draw_spec(class_index=class_index, rng=np.random.default_rng(seed))
        with_object = synthetic.render_spec(spec=spec, times=times, size=96)
        without_object = synthetic.render_spec(spec=spec, times=times, size=96, include_object=False)
        np.testing.assert_array_equal(with_object.boxes, without_object.boxes)
        for frame, empty, (x, y, w, h) in zip(with_object.frames, without_object.frames, with_object.boxes):
            mask = np.any(frame != empty, axis=-1)
            rows, cols = np.nonzero(mask)
            assert len(rows) > 0, "the object is invisible"
            assert (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1) == (
                x,
                y,
                w,
                h,
            )
            # The object fills its box (square: all of it; disc: about pi/4 of it).
            assert mask.sum() >= 0.7 * w * h


def test_outside_the_object_only_noise_changes_over_time() -> None:
    # The object is the only evidence: the background and distractor are static.
    for class_index in range(len(synthetic.CLASS_NAMES)):
        spec = synthetic.draw_spec(class_index=class_index, rng=np.random.default_rng(class_index))
        clip = synthetic.render_spec(spec=spec, times=np.linspace(0, 1, 16), size=64)
        outside = np.ones(clip.frames.shape[:3], dtype=bool)
        for x, y, w, h in clip.boxes:
            outside[:, y : y + h, x : x + w] = False  # any frame's box is excluded from all
        frames = clip.frames.astype(np.float32)
        change = np.abs(frames - frames[0:1]).max(axis=-1)[outside]
        assert np.percentile(change, 99) <= 8 * spec.noise_sigma


@pytest.mark.parametrize("class_index", range(len(synthetic.CLASS_NAMES)))
def test_each_class_moves_the_object_its_own_way(class_index: int) -> None:
    name = synthetic.CLASS_NAMES[class_index]
    for seed in SEEDS:
        clip = synthetic.make_clip(
            class_index=class_index, rng=np.random.default_rng(seed), frames=8, size=128
        )
        x, y, w, h = (clip.boxes[:, i].astype(float) for i in range(4))
        centre_x, centre_y, area = x + w / 2, y + h / 2, w * h
        dx, dy, growth = centre_x[-1] - centre_x[0], centre_y[-1] - centre_y[0], area[-1] / area[0]
        expected = {
            "moving right": dx > 0.2 * 128 and abs(dy) < 0.1 * 128,
            "moving left": dx < -0.2 * 128 and abs(dy) < 0.1 * 128,
            "moving up": dy < -0.2 * 128 and abs(dx) < 0.1 * 128,
            "moving down": dy > 0.2 * 128 and abs(dx) < 0.1 * 128,
            "growing": growth > 4 and abs(dx) <= 1 and abs(dy) <= 1,
            "shrinking": growth < 0.25 and abs(dx) <= 1 and abs(dy) <= 1,
        }
        assert expected[name], f"{name}: dx={dx} dy={dy} growth={growth}"
        if name.startswith("moving"):
            assert np.ptp(area) == 0


def test_engine_source_indices_match_the_original_tools_selection() -> None:
    for source_count, model_frames in [(48, 16), (33, 16), (100, 8), (32, 16)]:
        kept = np.arange(source_count)[1::2]  # the 2nd, 4th, 6th ... decoded frame
        reference = kept[np.linspace(0, len(kept) - 1, model_frames).astype(int)]
        np.testing.assert_array_equal(
            synthetic.engine_source_indices(source_frame_count=source_count, frames=model_frames), reference
        )


def test_dataset_is_model_input_with_balanced_classes_and_boxes_in_model_pixels() -> None:
    x, y, boxes = synthetic.make_dataset(n_per_class=3, frames=16, size=32, seed=1)
    assert x.shape == (3 * len(synthetic.CLASS_NAMES), 16, 32, 32, 3) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y), [3] * len(synthetic.CLASS_NAMES))
    assert boxes.shape == (len(y), 16, 4)
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 0] + boxes[..., 2] <= 32).all()
    assert (boxes[..., 1] >= 0).all() and (boxes[..., 1] + boxes[..., 3] <= 32).all()
    # Each sample is the source render at the engine's frames, scaled to model pixels.
    rng = np.random.default_rng(1)
    spec = synthetic.draw_spec(class_index=0, rng=rng)
    times = synthetic.engine_source_indices(source_frame_count=synthetic.SOURCE_FRAMES, frames=16) / (
        synthetic.SOURCE_FRAMES - 1
    )
    source = synthetic.render_spec(spec=spec, times=times, size=synthetic.SOURCE_SIZE)
    np.testing.assert_allclose(boxes[0], source.boxes * 32 / synthetic.SOURCE_SIZE)


def test_unknown_class_is_rejected() -> None:
    with pytest.raises(ValueError):
        synthetic.make_clip(
            class_index=len(synthetic.CLASS_NAMES), rng=np.random.default_rng(0), frames=4, size=32
        )


def test_moving_object_spans_about_a_quarter_to_a_third_of_the_frame() -> None:
    # Large enough that the box enlarged by a quarter holds a few model pixels at 32x32.
    for class_index in range(4):
        for seed in SEEDS:
            clip = synthetic.make_clip(
                class_index=class_index, rng=np.random.default_rng(seed), frames=4, size=128
            )
            assert (clip.boxes[:, 2] >= 0.25 * 128).all() and (clip.boxes[:, 2] <= 0.35 * 128).all()
