"""HDF5 weights that would read other files on the host are refused, and those files are never read.

A real saved model gets one weight replaced by an external link to a host HDF5 file, by a
dataset whose raw data is stored in a host file, by a virtual dataset mapping a host HDF5 file,
or by a soft link (to such an external link); in the .h5 file itself and in the weights inside
a .keras zip (as Keras stores it, and recompressed). Both inspect_model and load_model_safely
must refuse them, naming the dataset. The host files' access times are set in the past first,
so any read of them shows; each test's control reads the planted weight the way an unchecked
loader would, getting the secret values and moving the access time, which proves both that the
file really points there and that the access time would have shown a read.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # see gradcam3d/loading.py

import h5py  # noqa: E402

from gradcam3d.errors import ModelRefused  # noqa: E402
from gradcam3d.loading import load_model_safely  # noqa: E402
from gradcam3d.modelcheck import inspect_model  # noqa: E402
from tests.engine import model_factories as factories  # noqa: E402

KINDS = {
    "external_link": "to the external file",
    "external_storage": "in the external file",
    "virtual": "virtual dataset",
    "soft_link": "soft link",
}
PAST = 1_000_000_000.0  # 2001: any read of the file moves its access time (relatime) past this


@pytest.fixture()
def secrets(tmp_path: Path) -> dict[str, Path]:
    host = tmp_path / "host"
    host.mkdir()
    return factories.write_secret_files(directory=host)


def age_access_times(paths: dict[str, Path]) -> None:
    for path in paths.values():
        os.utime(path, (PAST, path.stat().st_mtime))


def accessed(paths: dict[str, Path]) -> list[str]:
    return [name for name, path in paths.items() if path.stat().st_atime != PAST]


def read_planted_weight(path: Path, name: str, *, scratch: Path) -> np.ndarray:
    """What an unchecked loader does: open the weights and read the planted dataset.

    From a .keras zip the weights are extracted to disk first, as Keras does when it judges
    memory short (opened from memory, HDF5 would resolve links against the same buffer).
    """
    weights = path
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            weights = Path(archive.extract("model.weights.h5", scratch))
    with h5py.File(weights, "r") as handle:
        return np.asarray(handle[name][()])


def planted_name(path: Path) -> str:
    """The dataset the factory replaced (the first kernel), found without following links."""
    found: list[str] = []
    if path.suffix == ".h5":
        with h5py.File(path, "r") as handle:
            handle.visititems_links(
                lambda name, link: found.append(name) if name.endswith(("kernel", "0")) else None
            )
    else:
        with (
            zipfile.ZipFile(path) as archive,
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as handle,
        ):
            handle.visititems_links(
                lambda name, link: found.append(name) if name.endswith(("kernel", "0")) else None
            )
    return found[0]


CASES = [(kind, fmt, zipfile.ZIP_STORED) for kind in KINDS for fmt in ("h5", "keras")] + [
    ("external_storage", "keras", zipfile.ZIP_DEFLATED),
    ("external_link", "keras", zipfile.ZIP_DEFLATED),
]


@pytest.mark.parametrize(
    ("kind", "fmt", "compression"),
    CASES,
    ids=[f"{kind}-{fmt}{'-deflated' if c else ''}" for kind, fmt, c in CASES],
)
def test_weights_reaching_host_files_are_refused_and_the_files_are_never_read(
    saved_models: dict, tmp_path: Path, secrets: dict[str, Path], kind: str, fmt: str, compression: int
) -> None:
    path = factories.write_model_with_hostile_weights(
        source=saved_models[("sequential_with_input", fmt)],
        directory=tmp_path,
        kind=kind,
        secrets=secrets,
        compression=compression,
    )
    name = planted_name(path)
    age_access_times(secrets)
    for attempt in (inspect_model, load_model_safely):
        with pytest.raises(ModelRefused) as caught:
            attempt(path)
        message = str(caught.value)
        assert caught.value.code == "external_data", message
        assert KINDS[kind] in message and f"'{name}'" in message, message
        assert "would read other files on this machine" in message
        assert "1234.5" not in message and "1000" not in message
    assert accessed(secrets) == []
    # Control: an unchecked read returns the host file's content and shows in its access time.
    values = read_planted_weight(path, name, scratch=tmp_path / "extracted")
    assert values.reshape(-1)[0] in (1000.0, 1234.5)
    assert accessed(secrets) != []


def test_keras_weights_refusal_names_the_weights_file(
    saved_models: dict, tmp_path: Path, secrets: dict[str, Path]
) -> None:
    path = factories.write_model_with_hostile_weights(
        source=saved_models[("nested_submodel", "keras")],
        directory=tmp_path,
        kind="external_storage",
        secrets=secrets,
    )
    with pytest.raises(ModelRefused) as caught:
        inspect_model(path)
    assert str(caught.value).startswith("The .keras file's weights (model.weights.h5) keeps the data of")
    assert str(secrets["raw"]) in str(caught.value)


def test_recompressed_keras_file_with_clean_weights_still_loads(saved_models: dict, tmp_path: Path) -> None:
    # Control for the deflated cases: recompressing a good model changes nothing.
    source = saved_models[("nested_submodel", "keras")]
    path = tmp_path / "recompressed.keras"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            copy.writestr(info.filename, original.read(info))
    x = np.random.default_rng(3).random((1, *factories.SMALL_INPUT_SHAPE), dtype=np.float32)
    assert inspect_model(path)["conv3d_layers"] == inspect_model(source)["conv3d_layers"]
    np.testing.assert_allclose(
        load_model_safely(path)(x).numpy(), load_model_safely(source)(x).numpy(), atol=1e-6
    )
