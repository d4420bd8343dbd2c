"""Small real models that scale their own input, and a video whose pixels span most of 0-255.

Keras is imported inside the builders, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FRAMES, SIZE, CLASSES = 8, 16, 3


def rescaling_model(*, seed: int = 11) -> Any:
    """A Keras-tutorial classifier: its first layer is Rescaling(1/255), so it wants 0-255 input."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((FRAMES, SIZE, SIZE, 3)),
            L.Rescaling(1.0 / 255, name="to_unit"),
            L.Conv3D(4, 3, padding="same", activation="relu", name="conv1"),
            L.MaxPooling3D((1, 2, 2)),
            L.Conv3D(6, 3, padding="same", activation="relu", name="conv2"),
            L.GlobalAveragePooling3D(),
            L.Dense(CLASSES, activation="softmax", name="scores"),
        ],
        name="rescaling",
    )


def save(model: Any, *, directory: Path, suffix: str = ".keras") -> Path:
    path = directory / f"{model.name}{suffix}"
    model.save(path)
    return path


def bright_square_video(path: Path, *, count: int = 30) -> Path:
    """A bright square (230) moving right over a dark, noisy background (0-59)."""
    from gradcam3d.ffmpeg import encode_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, (count, 48, 64, 3), dtype=np.uint8)
    for index in range(count):
        frames[index, 16:32, 2 * index : 2 * index + 16] = 230
    return encode_video(frames, path, fps=15)
