"""The manifest's engine versions say which GPUs TensorFlow could use ("none" on a CPU machine)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from gradcam3d.manifest import engine_versions
from gradcam3d.tf import import_tensorflow


def test_engine_versions_say_none_for_gpu_when_tensorflow_sees_no_gpu() -> None:
    tf = import_tensorflow()
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a visible GPU")
    assert engine_versions()["gpu"] == "none"


def test_engine_versions_name_every_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    tf = import_tensorflow()
    devices = [
        SimpleNamespace(name="/physical_device:GPU:0", device_type="GPU"),
        SimpleNamespace(name="/physical_device:GPU:1", device_type="GPU"),
    ]

    def list_physical_devices(device_type: str | None = None) -> list[Any]:
        return devices if device_type == "GPU" else []

    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)
    assert engine_versions()["gpu"] == "/physical_device:GPU:0, /physical_device:GPU:1"
