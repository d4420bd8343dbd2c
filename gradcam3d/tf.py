"""The one place TensorFlow (and Keras) is imported, with the environment it needs set first.

Every part of the engine that needs TensorFlow calls `import_tensorflow()` (or `import_keras()`)
instead of `import tensorflow`: TensorFlow reads these variables once, when it is first
imported, so they must be set immediately before that and nowhere else. Importing this module
sets nothing; only the calls do.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


def configure_tensorflow_environment() -> None:
    """Set TensorFlow's environment; takes effect only before TensorFlow is first imported.

    TensorFlow 2.21's oneDNN graph rewrites give wrong gradients inside a tf.function for a
    Conv3D+bias+ReLU output that feeds MaxPool3D (max error 0.79 on values up to 1.0, measured
    here; eager mode is right). Grad-CAM is gradients, so oneDNN is off before TF can load.
    It also makes the maps reproducible bit for bit (pinned by tests/engine/test_pipeline.py).
    It costs speed: with it on, the fused call was ~2.5-4x a forward pass instead of ~7x.
    A caller's own setting wins (setdefault): the demo trains with oneDNN on, on purpose.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@cache
def import_tensorflow() -> Any:
    """The `tensorflow` module, imported once with the engine's environment."""
    configure_tensorflow_environment()
    import tensorflow

    # Not tf.config.experimental.enable_op_determinism(): on CPU the kernels we run are already
    # deterministic once oneDNN is off (pinned by tests comparing two processes' files), and it
    # refuses some ops a user's model may contain.
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


@cache
def import_keras() -> Any:
    """The `keras` module (Keras 3 on the TensorFlow backend), imported after TensorFlow."""
    import_tensorflow()
    import keras

    return keras
