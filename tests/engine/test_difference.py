"""`python -m gradcam3d difference`: the signed difference of two maps, as images, for the
comparison page. The `.npz` inputs are untrusted (an engine child that ran an untrusted model
wrote them): object arrays, wrong ranks, oversized headers and mismatched shapes are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from gradcam3d.difference import MAX_FRAMES, compute_difference

REPO = Path(__file__).resolve().parents[2]


def run_cli(*arguments: str) -> tuple[int, dict[str, Any], str]:
    completed = subprocess.run(
        [sys.executable, "-m", "gradcam3d", "difference", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return completed.returncode, json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


def two_maps(tmp_path: Path, *, shape_b: tuple[int, int, int] = (4, 16, 16)) -> tuple[Path, Path]:
    a = np.zeros((4, 16, 16), dtype=np.float32)
    a[:, :8, :] = 2.0  # A hot in the top half, scale 2 (normalised away)
    b = np.zeros(shape_b, dtype=np.float32)
    b[:, 8:, :] = 5.0  # B hot in the bottom half
    np.savez(tmp_path / "a.npz", upsampled_class1=a, raw_class1=a[:, :2, :2])
    np.savez(tmp_path / "b.npz", upsampled_class0=b)
    return tmp_path / "a.npz", tmp_path / "b.npz"


def test_difference_writes_one_diverging_image_per_frame_a_legend_and_statistics(tmp_path: Path) -> None:
    a, b = two_maps(tmp_path)
    status, result, _ = run_cli(
        str(a), "upsampled_class1", str(b), "upsampled_class0", "--out", str(tmp_path / "out")
    )
    assert status == 0 and result["ok"] is True
    assert result["shape"] == [4, 16, 16]
    assert result["frames"] == [f"frames/{index:04d}.png" for index in range(4)]
    assert result["legend"] == "legend.png" and (tmp_path / "out" / "legend.png").is_file()
    # Normalised to [0, 1] each: +1 in A's half, -1 in B's half, so |difference| is 1 everywhere.
    assert result["mean_abs"] == pytest.approx(1.0) and result["max_abs"] == pytest.approx(1.0)
    image = cv2.imread(str(tmp_path / "out" / "frames" / "0000.png"))[..., ::-1]
    assert image.shape[0] >= 224  # upscaled like the heatmap images
    top, bottom = image[10, 10].astype(int), image[-10, 10].astype(int)
    assert top[0] > top[2] + 50, "A hotter is red"
    assert bottom[2] > bottom[0] + 50, "B hotter is blue"


def test_equal_maps_give_white_images_and_zero_difference(tmp_path: Path) -> None:
    a, _ = two_maps(tmp_path)
    result = compute_difference(a, "upsampled_class1", a, "upsampled_class1", out_dir=tmp_path / "same")
    assert result["max_abs"] == 0.0
    image = cv2.imread(str(tmp_path / "same" / "frames" / "0002.png"))
    assert abs(int(image[5, 5].min()) - 247) <= 2  # the diverging map's white


def test_maps_of_different_shapes_are_refused_with_a_sentence(tmp_path: Path) -> None:
    a, b = two_maps(tmp_path, shape_b=(4, 16, 8))
    status, result, stderr = run_cli(
        str(a), "upsampled_class1", str(b), "upsampled_class0", "--out", str(tmp_path / "o")
    )
    assert status == 2 and result == {"ok": False, "code": "shape_mismatch", "error": result["error"]}
    assert "4x16x16 and 4x16x8" in result["error"] and "4x16x16" in stderr
    assert not (tmp_path / "o" / "frames").exists() or not list((tmp_path / "o" / "frames").iterdir())


@pytest.mark.parametrize(
    ("arrays", "key", "code"),
    [
        ({"upsampled_class1": np.array([{"x": 1}], dtype=object)}, "upsampled_class1", "bad_maps"),
        ({"upsampled_class1": np.zeros((4, 4), dtype=np.float32)}, "upsampled_class1", "bad_maps"),
        ({"upsampled_class1": np.zeros((2, 2, 2), dtype=np.int64)}, "upsampled_class1", "bad_maps"),
        ({"upsampled_class1": np.zeros((2, 2, 2), dtype=np.float32)}, "upsampled_class2", "missing_key"),
        ({"upsampled_class1": np.zeros((2, 2, 2), dtype=np.float32)}, "../etc/passwd", "bad_key"),
    ],
    ids=["pickled-object-array", "rank-2", "integers", "missing-key", "not-a-map-key"],
)
def test_untrusted_npz_contents_are_refused_before_use(
    tmp_path: Path, arrays: dict[str, Any], key: str, code: str
) -> None:
    good, _ = two_maps(tmp_path)
    np.savez(tmp_path / "bad.npz", **arrays)
    status, result, _ = run_cli(
        str(tmp_path / "bad.npz"), key, str(good), "upsampled_class1", "--out", str(tmp_path / "o")
    )
    assert status == 2 and result["ok"] is False and result["code"] == code, result


def test_a_header_claiming_a_huge_map_is_refused_without_reading_it(tmp_path: Path) -> None:
    import zipfile

    header = {"descr": "<f4", "fortran_order": False, "shape": (MAX_FRAMES + 1, 4096, 4096)}
    with (
        zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive,
        archive.open("upsampled_class1.npy", "w") as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        member.write(b"\0" * 64)
    good, _ = two_maps(tmp_path)
    status, result, _ = run_cli(
        str(tmp_path / "huge.npz"),
        "upsampled_class1",
        str(good),
        "upsampled_class1",
        "--out",
        str(tmp_path / "o"),
    )
    assert status == 2 and result["code"] == "too_large"


def test_a_file_that_is_not_an_npz_is_refused(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("hello")
    good, _ = two_maps(tmp_path)
    status, result, _ = run_cli(
        str(tmp_path / "text.npz"),
        "upsampled_class1",
        str(good),
        "upsampled_class1",
        "--out",
        str(tmp_path / "o"),
    )
    assert status == 2 and "not a valid .npz" in result["error"]
