"""The worker's part of verifying a past analysis (the body of `analyses.tasks.verify_analysis_task`).

1. The stored inputs (the classifier's model file and the video's original) are hashed; when one
   no longer has the SHA-256 the analysis recorded, the verdict says which and nothing runs.
2. The engine re-runs the analysis with the parameters its manifest recorded (complete, see
   docs/engine-contract.md) through the same machinery as a run (`execution.engine_run`), into
   a scratch folder that is removed afterwards. The analysis's row and results are only read.
3. Per layer, the stored `raw_maps.npz` (hashed now: the stored file, not the manifest's claim,
   read through the media store, so the worker needs no disk shared with the web)
   is compared with the re-run's: identical when the hashes match (the engine writes them
   byte-for-byte deterministically); otherwise a sandboxed engine child computes, per class,
   the maximum absolute difference relative to the stored map's maximum. The engine and library
   versions of both runs and their predictions are compared too.

Everything the engine wrote (the re-run's manifest and files, the stored maps) is untrusted:
paths are checked, hashes computed here, arrays read only by the engine child.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

from django.http import Http404

from analyses import storage
from analyses.files import clean_result_name, resolve_result_path
from analyses.runs import verification as verification_state
from analyses.runs.execution import (
    HEARTBEAT_SECONDS,
    PROGRESS_SAVE_SECONDS,
    engine_run,
    load_manifest,
    worker_cache_trim,
)
from analyses.runs.models import Analysis, AnalysisStatus, Verification
from analyses.worker import runner
from analyses.worker.engine_client import EngineError, compare_raw_maps

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = (
    "The verification failed because of an internal error in the worker; it has been logged."
)
RERUN_SHARE = 0.85  # of the progress bar: the re-run; the rest is the comparison
_MAP_KEY = re.compile(r"^(raw|upsampled)_class(\d{1,6})$")
_INPUT_WORDS = {"model": "model file", "video": "original video file"}


class VerificationReporter:
    """Saves the re-run's progress on the verification row (throttled) with a heartbeat; the
    engine stops when the row is no longer this worker's (reaped)."""

    def __init__(self, *, verification_id: int, lease: str) -> None:
        self.verification_id = verification_id
        self.lease = lease
        self.last_write = time.monotonic()
        self.stage = ""
        self.lost = False

    def save(self, fields: dict[str, Any]) -> None:
        updated = verification_state.verification_heartbeat(
            verification_id=self.verification_id, lease=self.lease, fields=fields
        )
        self.last_write = time.monotonic()
        if not updated:
            self.lost = True

    def on_event(self, message: dict[str, Any]) -> None:
        if message.get("event") != "progress":
            return
        stage = "re-running: " + " ".join(str(message.get("stage") or "").split())[:80]
        try:
            fraction = min(max(float(message.get("fraction") or 0.0), 0.0), 1.0)
        except (TypeError, ValueError):
            fraction = 0.0
        if stage != self.stage or time.monotonic() - self.last_write >= PROGRESS_SAVE_SECONDS:
            self.stage = stage
            self.save({"stage": stage[:100], "progress": round(fraction * RERUN_SHARE, 4)})

    def should_cancel(self) -> bool:
        if time.monotonic() - self.last_write >= HEARTBEAT_SECONDS:
            self.save({})
        return self.lost


def verification_run(*, verification_id: int) -> str:
    """Verify one analysis. Returns the row's final status, or "skipped" when it was not queued."""
    lease = verification_state.verification_claim(verification_id=verification_id)
    if lease is None:
        logger.info("verification %s is not queued: skipped", verification_id)
        return "skipped"
    reporter = VerificationReporter(verification_id=verification_id, lease=lease)
    try:
        return _verify(verification_id=verification_id, reporter=reporter)
    except Exception:  # noqa: BLE001 - the row must end in a final state, never `running`
        logger.exception("verification %s failed inside the worker", verification_id)
        verification_state.verification_fail(
            verification_id=verification_id, lease=lease, message=INTERNAL_ERROR_MESSAGE
        )
        return "failed"
    finally:
        worker_cache_trim()


def _fail(reporter: VerificationReporter, message: str) -> str:
    verification_state.verification_fail(
        verification_id=reporter.verification_id, lease=reporter.lease, message=message
    )
    return "failed"


def _finish(reporter: VerificationReporter, verdict: dict[str, Any]) -> str:
    won = verification_state.verification_finish(
        verification_id=reporter.verification_id, lease=reporter.lease, verdict=_json_safe(verdict)
    )
    return "finished" if won else "skipped"


def _verify(*, verification_id: int, reporter: VerificationReporter) -> str:
    verification = Verification.objects.select_related(
        "analysis", "analysis__classifier", "analysis__video"
    ).get(pk=verification_id)
    analysis = verification.analysis
    manifest = analysis.manifest or {}
    if analysis.status != AnalysisStatus.SUCCEEDED or not manifest or not analysis.results_dir:
        return _fail(reporter, "This analysis has no results to verify (any more).")
    reporter.save({"stage": "checking the inputs"})
    inputs, input_paths = _inputs_now(analysis)
    changed = [name for name, record in inputs.items() if record["changed"]]
    if changed:
        return _finish(reporter, _inputs_changed_verdict(inputs=inputs, changed=changed))
    stored = _stored_maps(analysis)
    params = manifest.get("params")
    if not isinstance(params, dict) or not params:
        return _fail(reporter, "This analysis's manifest records no parameters to re-run it with.")
    reporter.save({"stage": "re-running the analysis", "progress": 0.0})
    with engine_run(
        inputs=input_paths,
        work_dir=runner.work_root() / f"verify-{verification.code.hex}",
        params=params,
        on_event=reporter.on_event,
        should_cancel=reporter.should_cancel,
    ) as (outcome, out_dir):
        if outcome.kind == "cancelled":
            return "failed"  # taken away (reaped): the reaper has already failed the row
        if outcome.kind != "succeeded":
            return _fail(reporter, f"The re-run did not complete: {outcome.message}")
        try:
            rerun = load_manifest(manifest_path=outcome.manifest_path, out_dir=out_dir)
        except (OSError, ValueError) as exc:
            logger.error("verification %s: unusable manifest: %s", verification_id, exc)
            return _fail(reporter, "The re-run finished without a readable result.")
        verdict = _compare(
            stored=stored, rerun=rerun, rerun_dir=out_dir, manifest=manifest, inputs=inputs, reporter=reporter
        )
    return _finish(reporter, verdict)


# --------------------------------------------------------------------------- inputs
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fresh_copy(name: str, *, size: int | None = None) -> Path:
    """This machine's copy of the stored file `name`, for hashing: from the object store it is
    downloaded again (a cached copy may predate a change of the stored object, and finding such
    a change is the point of verifying). MediaMissing when it is not stored."""
    storage.media_drop_local_copy(names=[name])
    return storage.media_fetch(name=name, size=size)


def _inputs_now(analysis: Analysis) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """Per input: the SHA-256 recorded when the analysis ran and the one of the stored file now;
    and the local copies hashed (the re-run reads exactly those)."""
    recorded_inputs = (analysis.manifest or {}).get("inputs") or {}
    inputs: dict[str, dict[str, Any]] = {}
    paths: dict[str, Path] = {}
    for name, row in (("model", analysis.classifier), ("video", analysis.video)):
        recorded = (analysis.input_hashes or {}).get(name) or (recorded_inputs.get(name) or {}).get("sha256")
        try:
            paths[name] = _fresh_copy(row.file.name or "", size=row.size_bytes)
            now: str | None = sha256_of(paths[name])
        except OSError:  # MediaMissing (never stored, or no file name) or unreadable: changed
            now = None
        inputs[name] = {"recorded": recorded, "now": now, "changed": not recorded or now != recorded}
    return inputs, paths


def _inputs_changed_verdict(*, inputs: dict[str, dict[str, Any]], changed: list[str]) -> dict[str, Any]:
    words = " and the ".join(_INPUT_WORDS[name] for name in changed)
    missing = [name for name in changed if inputs[name]["now"] is None]
    detail = (
        "is missing from the server" if len(changed) == len(missing) else "no longer has the SHA-256 recorded"
    )
    verb = "has" if len(changed) == 1 else "have"
    return {
        "outcome": "inputs_changed",
        "summary": (
            f"Not re-run: the {words} {verb} changed since the analysis ran (the file {detail}), "
            "so the result can no longer be reproduced from the stored inputs."
        ),
        "changed_inputs": changed,
        "inputs": inputs,
    }


# --------------------------------------------------------------------------- maps
def _raw_map_records(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{layer name: its raw_maps file record} of a manifest, only records with a clean path."""
    records: dict[str, dict[str, Any]] = {}
    for record in manifest.get("files") or []:
        if not isinstance(record, dict) or record.get("role") != "raw_maps":
            continue
        name = clean_result_name(record.get("path"))
        if name is not None and isinstance(record.get("layer"), str):
            records.setdefault(record["layer"], {**record, "path": name})
    return records


def _stored_maps(analysis: Analysis) -> dict[str, dict[str, Any]]:
    """Per layer: the stored raw maps file, its recorded SHA-256 and the one it has now."""
    stored: dict[str, dict[str, Any]] = {}
    for layer, record in _raw_map_records(analysis.manifest or {}).items():
        entry: dict[str, Any] = {"path": None, "recorded": record.get("sha256"), "now": None}
        try:
            path = _published_file(results_dir=analysis.results_dir, name=record["path"])
            entry.update(path=path, now=sha256_of(path))
        except (Http404, OSError):  # OSError includes MediaMissing
            pass
        stored[layer] = entry
    return stored


def _published_file(*, results_dir: str, name: str) -> Path:
    """This machine's copy of a published result file (the stored raw maps): on the local disk
    the file itself, checked like the file view does; from the object store a fresh download
    (the web server and earlier workers may be other machines)."""
    if not storage.store_is_remote():
        return resolve_result_path(results_dir=results_dir, name=name)
    return _fresh_copy(f"{results_dir}/{name}")


def _rerun_file(rerun_dir: Path, name: str) -> Path | None:
    """A file the re-run's manifest names, if it is a regular file inside its output folder."""
    path = rerun_dir / name
    try:
        if path.is_symlink() or not path.is_file() or rerun_dir.resolve() not in path.resolve().parents:
            return None
    except OSError:
        return None
    return path


def _class_differences(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """compare-maps' per-array result grouped per class: raw and upsampled relative differences."""
    classes: dict[int, dict[str, Any]] = {}
    for name, entry in (comparison.get("arrays") or {}).items():
        match = _MAP_KEY.match(str(name))
        if not match or not isinstance(entry, dict):
            continue
        kind, index = match.group(1), int(match.group(2))
        row = classes.setdefault(index, {"class": index})
        if entry.get("same_shape") is False:
            row[f"{kind}_shape_mismatch"] = [entry.get("shape_a"), entry.get("shape_b")]
            row[kind] = None
        else:
            row[kind] = _number(entry.get("relative_diff"))
            row[f"{kind}_max_abs_diff"] = _number(entry.get("max_abs_diff"))
    return [classes[index] for index in sorted(classes)]


def _layer_verdict(
    *, layer: str, stored: dict[str, Any] | None, rerun_record: dict[str, Any] | None, rerun_dir: Path
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "layer": layer,
        "recorded_sha256": (stored or {}).get("recorded"),
        "stored_sha256": (stored or {}).get("now"),
        "rerun_sha256": None,
        "identical": False,
        "classes": [],
        "max_relative_diff": None,
    }
    rerun_path = _rerun_file(rerun_dir, rerun_record["path"]) if rerun_record else None
    if stored is None or stored.get("path") is None:
        entry["problem"] = "the stored maps of this layer are missing"
    if rerun_path is None:
        entry["problem"] = "the re-run wrote no maps for this layer"
    if entry.get("problem"):
        return entry
    assert stored is not None and rerun_path is not None
    entry["rerun_sha256"] = sha256_of(rerun_path)
    entry["stored_matches_record"] = entry["stored_sha256"] == entry["recorded_sha256"]
    if entry["stored_sha256"] == entry["rerun_sha256"] == entry["recorded_sha256"]:
        entry.update(identical=True, max_relative_diff=0.0)
        return entry
    try:
        comparison = compare_raw_maps(stored["path"], rerun_path)
    except EngineError as exc:
        entry["problem"] = f"the maps could not be compared: {exc.message}"
        return entry
    entry["classes"] = _class_differences(comparison)
    entry["max_relative_diff"] = _number(comparison.get("max_relative_diff"))
    if comparison.get("only_in_a") or comparison.get("only_in_b"):
        entry["problem"] = "the two files do not hold the same maps"
    return entry


def _compare(
    *,
    stored: dict[str, dict[str, Any]],
    rerun: dict[str, Any],
    rerun_dir: Path,
    manifest: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    reporter: VerificationReporter,
) -> dict[str, Any]:
    rerun_records = _raw_map_records(rerun)
    names = [*stored, *(name for name in rerun_records if name not in stored)]
    layers = []
    for position, layer in enumerate(names):
        # Also the heartbeat: each comparison is a child process of up to a couple of minutes.
        reporter.save(
            {
                "stage": f"comparing the maps (layer {position + 1} of {len(names)})",
                "progress": round(RERUN_SHARE + (1 - RERUN_SHARE) * position / len(names), 4),
            }
        )
        layers.append(
            _layer_verdict(
                layer=layer,
                stored=stored.get(layer),
                rerun_record=rerun_records.get(layer),
                rerun_dir=rerun_dir,
            )
        )
    identical = bool(layers) and all(layer["identical"] for layer in layers)
    relatives = [layer["max_relative_diff"] for layer in layers if layer["max_relative_diff"] is not None]
    versions = _versions_changed(manifest.get("engine") or {}, rerun.get("engine") or {})
    prediction = _prediction_change(manifest.get("prediction") or {}, rerun.get("prediction") or {})
    verdict = {
        "outcome": "identical" if identical else "differs",
        "layers": layers,
        "max_relative_diff": max(relatives)
        if relatives and all(not layer.get("problem") for layer in layers)
        else None,
        "versions_changed": versions,
        "prediction": prediction,
        "inputs": inputs,
    }
    verdict["summary"] = _summary(verdict)
    return verdict


def _summary(verdict: dict[str, Any]) -> str:
    if verdict["outcome"] == "identical":
        text = "Identical: every layer's raw maps are byte-for-byte the stored ones."
    else:
        different = [layer["layer"] for layer in verdict["layers"] if not layer["identical"]]
        worst = verdict["max_relative_diff"]
        text = f"Differs in {len(different)} of {len(verdict['layers'])} layers"
        text += f" (largest difference {worst:.3g} of a map's maximum)." if worst is not None else "."
        tampered = [
            layer["layer"] for layer in verdict["layers"] if layer.get("stored_matches_record") is False
        ]
        if tampered:
            text += (
                " The stored maps of "
                + ", ".join(tampered)
                + " no longer match the SHA-256 recorded with them."
            )
    if verdict["versions_changed"]:
        text += (
            " Changed versions: "
            + ", ".join(
                f"{change['name']} {change['before']} → {change['after']}"
                for change in verdict["versions_changed"]
            )
            + "."
        )
    if verdict["prediction"].get("changed"):
        text += f" The predicted class changed from {verdict['prediction']['before']} to {verdict['prediction']['after']}."
    return text


def _versions_changed(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    names = [*before, *(name for name in after if name not in before)]
    return [
        {"name": str(name)[:50], "before": _short(before.get(name)), "after": _short(after.get(name))}
        for name in names
        if before.get(name) != after.get(name)
    ]


def _prediction_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    old, new = before.get("predicted_class"), after.get("predicted_class")
    old_probabilities, new_probabilities = before.get("probabilities") or [], after.get("probabilities") or []
    difference = None
    if (
        isinstance(old_probabilities, list)
        and isinstance(new_probabilities, list)
        and len(old_probabilities) == len(new_probabilities)
    ):
        try:
            difference = max(
                (abs(float(a) - float(b)) for a, b in zip(old_probabilities, new_probabilities, strict=True)),
                default=0.0,
            )
        except (TypeError, ValueError):
            difference = None
    return {
        "before": old if isinstance(old, int) else None,
        "after": new if isinstance(new, int) else None,
        "changed": old != new,
        "max_probability_diff": _number(difference),
    }


# --------------------------------------------------------------------------- JSON safety
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _short(value: Any) -> str | None:
    return None if value is None else str(value)[:100]


def _json_safe(value: Any) -> Any:
    """No NaN or infinity in what is stored (PostgreSQL's JSON refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
