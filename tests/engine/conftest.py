"""Fixtures for engine tests: tiny real models saved into temporary directories.

`saved_models` builds every architecture of model_factories.GOOD_ARCHITECTURES once per test
session and saves it as both .h5 and .keras; keys are (architecture name, "h5" | "keras").
Keras is imported only when a fixture that needs it is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest_demo import demo_bundle  # noqa: F401 - shared demo fixture

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Before any TensorFlow import: see gradcam3d/loading.py (oneDNN gives wrong graph gradients).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide directory holding the saved good models."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def built_models() -> dict[str, Any]:
    """Unsaved, built Keras models by architecture name (shared: do not modify them)."""
    from tests.engine.model_factories import GOOD_ARCHITECTURES

    return {name: spec[0]() for name, spec in GOOD_ARCHITECTURES.items()}


@pytest.fixture(scope="session")
def saved_models(built_models: dict[str, Any], model_dir: Path) -> dict[tuple[str, str], Path]:
    """(architecture, fmt) -> path of the model saved with model.save in that format."""
    from tests.engine.model_factories import save_model

    return {
        (name, fmt): save_model(model, directory=model_dir, fmt=fmt, name=f"{name}_{fmt}")
        for name, model in built_models.items()
        for fmt in ("h5", "keras")
    }
