"""Inspection applies its caps before the expensive read they protect: zip directories, HDF5 attributes.

Each hostile file is built here and inspected in a fresh child process, whose peak resident
memory (VmHWM) is compared with the same child inspecting a small good model. Before the caps
were moved in front of the reads, these files cost (peak minus baseline, measured): 17 MB zip of
200,000 entries +111 MB (either end-record count), 64 MB variable-length config +353 MB, 64 MB
fixed-length config +193 MB, a 6 KB file whose config claims 512 MB +513 MB. After: about 1 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from gradcam3d.errors import ModelRefused
from gradcam3d.modelcheck import inspect_model
from tests.engine import model_factories as factories

REPO_ROOT = Path(__file__).resolve().parents[2]
# Far below what the unchecked reads cost (100-500 MB above baseline), far above noise.
MAX_EXTRA_PEAK_MB = 20

_CHILD = """
import json, sys
from gradcam3d.errors import ModelRefused
from gradcam3d.modelcheck import inspect_model
try:
    inspect_model(sys.argv[1])
    outcome = {"refused": False}
except ModelRefused as exc:
    outcome = {"refused": True, "code": exc.code, "message": str(exc)}
status = open("/proc/self/status").read()
outcome["peak_kb"] = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
print(json.dumps(outcome))
"""


def inspect_in_child(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def baseline_peak_kb(saved_models: dict) -> int:
    """Peak memory of a child that imports everything and inspects a small good .h5 and .keras."""
    peaks = [inspect_in_child(saved_models[("nested_submodel", fmt)]) for fmt in ("h5", "keras")]
    assert not any(peak["refused"] for peak in peaks)
    return max(peak["peak_kb"] for peak in peaks)


def assert_refused_with_small_memory(
    path: Path, baseline_kb: int, *, code: str, words: str
) -> dict[str, Any]:
    outcome = inspect_in_child(path)
    assert outcome["refused"], outcome
    assert outcome["code"] == code and words in outcome["message"], outcome
    extra_mb = (outcome["peak_kb"] - baseline_kb) / 1024
    assert extra_mb < MAX_EXTRA_PEAK_MB, f"inspection peaked {extra_mb:.0f} MB above baseline"
    return outcome


# --------------------------------------------------------------------------------------------
# Zip directory


@pytest.mark.parametrize("honest_count", [True, False], ids=["count_declared", "count_hidden"])
def test_zip_with_200000_entries_is_refused_from_its_end_record_in_little_memory(
    tmp_path: Path, baseline_peak_kb: int, honest_count: bool
) -> None:
    path = factories.write_zip_with_huge_directory(directory=tmp_path, honest_count=honest_count)
    assert 16_000_000 < path.stat().st_size < 18_000_000
    with zipfile.ZipFile(path) as archive:  # zipfile itself accepts the directory
        assert len(archive.infolist()) == 200_000
    words = "200000 entries" if honest_count else "zip directory takes 17,000,000 bytes"
    outcome = assert_refused_with_small_memory(path, baseline_peak_kb, code="zip_bomb", words=words)
    assert "possible zip bomb" in outcome["message"]


def test_zip_naming_one_entry_twice_is_refused(saved_models: dict, tmp_path: Path) -> None:
    source = saved_models[("sequential_with_input", "keras")]
    path = tmp_path / "duplicate.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for info in original.infolist():
            copy.writestr(info.filename, original.read(info))
        with pytest.warns(UserWarning, match="Duplicate name"):
            copy.writestr("config.json", b'{"class_name": "Sequential"}')
    with pytest.raises(ModelRefused) as caught:
        inspect_model(path)
    assert caught.value.code == "corrupted" and "'config.json' twice" in str(caught.value)


# --------------------------------------------------------------------------------------------
# HDF5 attributes


def test_64_mb_variable_length_config_is_refused_before_it_is_read(
    tmp_path: Path, baseline_peak_kb: int
) -> None:
    path = factories.write_h5_with_huge_config(directory=tmp_path)
    outcome = assert_refused_with_small_memory(
        path, baseline_peak_kb, code="too_large", words="attribute 'model_config' on '/' is 67,108,864 bytes"
    )
    assert "refused before reading it" in outcome["message"]


def test_config_whose_descriptor_claims_512_mb_in_a_6_kb_file_is_refused_in_little_memory(
    tmp_path: Path, baseline_peak_kb: int
) -> None:
    path = factories.write_h5_with_lying_attribute_length(directory=tmp_path, claimed_bytes=512 * 1024**2)
    assert path.stat().st_size < 10_000
    assert_refused_with_small_memory(
        path, baseline_peak_kb, code="too_large", words="'model_config' on '/' is 536,870,912 bytes"
    )


def test_64_mb_fixed_length_config_in_dense_attribute_storage_is_refused_before_it_is_read(
    tmp_path: Path, baseline_peak_kb: int
) -> None:
    # HDF5 keeps an attribute that large in "dense" storage, where even asking whether the name
    # exists reads all of it; Keras never writes attributes there.
    path = factories.write_h5_with_huge_config(directory=tmp_path, variable_length=False)
    assert_refused_with_small_memory(
        path, baseline_peak_kb, code="corrupted", words="attributes in dense storage"
    )


def test_lying_attribute_keras_reads_while_loading_weights_is_refused_at_inspection(
    saved_models: dict, tmp_path: Path, baseline_peak_kb: int
) -> None:
    # Keras' h5 loader reads model_weights' "layer_names" attribute; it is checked like the config.
    path = factories.write_h5_with_lying_attribute_length(
        directory=tmp_path,
        claimed_bytes=512 * 1024**2,
        source=saved_models[("sequential_with_input", "h5")],
        owner="model_weights",
        name="layer_names",
    )
    assert_refused_with_small_memory(
        path,
        baseline_peak_kb,
        code="too_large",
        words="attribute 'layer_names' on 'model_weights' is 536,870,912 bytes",
    )


def test_large_but_acceptable_config_and_both_object_header_versions_are_read(
    saved_models: dict, tmp_path: Path
) -> None:
    # Controls for the header parsing above: a 5 MB config (variable-length, as Keras writes
    # it), and the same model written with HDF5's newer object headers (libver="latest").
    import h5py

    source = saved_models[("functional_bn_residual", "h5")]
    expected = inspect_model(source)
    with h5py.File(source, "r") as original:
        config = json.loads(original.attrs["model_config"])
    padded = tmp_path / "padded.h5"
    padded.write_bytes(source.read_bytes())
    with h5py.File(padded, "r+") as handle:
        del handle.attrs["model_config"]
        handle.attrs["model_config"] = json.dumps(config, indent=" " * 5000).encode()
        assert len(handle.attrs["model_config"]) > 5_000_000
    latest = tmp_path / "latest.h5"
    with h5py.File(source, "r") as original, h5py.File(latest, "w", libver="latest") as copy:
        for name in original:
            original.copy(original[name], copy, name=name)
        for name, value in original.attrs.items():
            copy.attrs[name] = value
        assert h5py.h5o.get_info(copy.id).hdr.version == 2
    for path in (padded, latest):
        assert inspect_model(path)["conv3d_layers"] == expected["conv3d_layers"]
