"""`python -m gradcam3d compare-maps A.npz B.npz`: the per-array comparison a verification uses,
and its refusal of hostile files (pickles, object arrays, oversize, zip bombs, non-numeric)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcam3d.manifest import save_npz_deterministic
from gradcam3d.mapcompare import MapsRefused, compare_map_files

REPO = Path(__file__).resolve().parents[2]


def _maps(seed: int = 0, *, classes: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for k in range(classes):
        arrays[f"raw_class{k}"] = rng.random((2, 4, 4), dtype=np.float32)
        arrays[f"upsampled_class{k}"] = rng.random((8, 16, 16), dtype=np.float32)
    return arrays


def _cli(*arguments: str) -> tuple[int, dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-m", "gradcam3d", "compare-maps", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.returncode, json.loads(completed.stdout.strip().splitlines()[-1])


def test_identical_files_compare_identical_with_zero_differences(tmp_path: Path) -> None:
    a = save_npz_deterministic(tmp_path / "a.npz", _maps())
    b = save_npz_deterministic(tmp_path / "b.npz", _maps())
    status, result = _cli(str(a), str(b))
    assert status == 0 and result["ok"] is True
    assert result["identical"] is True and result["max_relative_diff"] == 0.0
    assert set(result["arrays"]) == {"raw_class0", "raw_class1", "upsampled_class0", "upsampled_class1"}
    assert all(entry["relative_diff"] == 0.0 for entry in result["arrays"].values())


def test_a_changed_map_gives_its_max_difference_relative_to_the_reference_maximum(tmp_path: Path) -> None:
    reference = _maps()
    changed = {name: array.copy() for name, array in reference.items()}
    changed["raw_class1"][1, 2, 3] += 0.25
    a = save_npz_deterministic(tmp_path / "a.npz", reference)
    b = save_npz_deterministic(tmp_path / "b.npz", changed)
    status, result = _cli(str(a), str(b))
    assert status == 0 and result["identical"] is False
    entry = result["arrays"]["raw_class1"]
    expected = 0.25 / float(np.abs(reference["raw_class1"]).max())
    assert entry["max_abs_diff"] == pytest.approx(0.25, rel=1e-5)
    assert entry["relative_diff"] == pytest.approx(expected, rel=1e-5)
    assert result["max_relative_diff"] == pytest.approx(expected, rel=1e-5)
    assert result["arrays"]["raw_class0"]["relative_diff"] == 0.0


def test_mismatched_shapes_and_missing_arrays_are_reported_not_compared(tmp_path: Path) -> None:
    reference = _maps()
    other = {**_maps(), "upsampled_class0": np.zeros((4, 16, 16), np.float32)}
    del other["raw_class1"]
    a = save_npz_deterministic(tmp_path / "a.npz", reference)
    b = save_npz_deterministic(tmp_path / "b.npz", other)
    result = compare_map_files(a, b)
    assert result["arrays"]["upsampled_class0"] == {
        "same_shape": False,
        "shape_a": [8, 16, 16],
        "shape_b": [4, 16, 16],
    }
    assert result["only_in_a"] == ["raw_class1"] and result["only_in_b"] == []
    assert result["identical"] is False and result["max_relative_diff"] is None


def test_pickled_object_arrays_are_refused_without_being_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    hostile = tmp_path / "hostile.npz"
    # An object array whose pickle would create a file if it were ever loaded.
    payload = np.array([_Marker(str(marker))], dtype=object)
    np.savez(hostile, raw_class0=payload)
    good = save_npz_deterministic(tmp_path / "good.npz", _maps(classes=1))
    status, result = _cli(str(good), str(hostile))
    assert status == 2 and result["ok"] is False and result["code"] == "bad_maps"
    assert "not numeric" in result["error"]
    assert not marker.exists()


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.path),))


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    a = save_npz_deterministic(tmp_path / "a.npz", _maps())
    status, result = _cli(str(a), str(a), "--max-bytes", "1000")
    assert status == 2 and result["code"] == "bad_maps" and "limit" in result["error"]


def test_an_array_declaring_more_values_than_allowed_is_refused_before_reading(tmp_path: Path) -> None:
    a = save_npz_deterministic(tmp_path / "a.npz", _maps())
    with pytest.raises(MapsRefused, match="limit"):
        compare_map_files(a, a, max_elements=100)


def test_a_zip_bomb_member_is_refused_by_its_declared_size(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(4_000_000, np.float32))
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("raw_class0.npy", buffer.getvalue())
    assert bomb.stat().st_size < 100_000
    with pytest.raises(MapsRefused, match="limit"):
        compare_map_files(bomb, bomb, max_bytes=1_000_000)


def test_non_numeric_and_non_npz_files_are_refused(tmp_path: Path) -> None:
    strings = tmp_path / "strings.npz"
    np.savez(strings, raw_class0=np.array(["a", "b"]))
    with pytest.raises(MapsRefused, match="not numeric"):
        compare_map_files(strings, strings)
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(MapsRefused, match="not an .npz"):
        compare_map_files(text, text)
