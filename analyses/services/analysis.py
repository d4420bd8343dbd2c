"""Analyses: create and queue, re-run, cancel, delete, and the state machine with its reaper.

An `Analysis` row carries its own state machine, queued -> running -> succeeded / failed /
cancelled, and every change is a compare-and-set (`filter(pk=, status=expected).update(...)`):
of two processes racing to move a row out of the same state exactly one wins, so a re-delivered
task, a cancel and the reaper can never both act on the same run.

The django-q2 task (`analyses.tasks.run_analysis_task`) is enqueued on `transaction.on_commit`,
so a worker never looks for a row that is not committed yet.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Team, TeamMembership
from analyses.audit import audit_log
from analyses.models import Analysis, AnalysisStatus, Classifier, Video
from analyses.selectors import (
    analyses_visible_to,
    can_write,
    classifiers_usable_by,
    videos_usable_by,
)
from analyses.services.quota import active_analyses_count, active_analyses_limit

logger = logging.getLogger(__name__)

TASK_FUNCTION = "analyses.tasks.run_analysis_task"
REAPER_FUNCTION = "analyses.tasks.reap_stale_analyses_task"
REAPER_SCHEDULE_NAME = "gradcam: reap stale analyses"
RESULTS_FOLDER = "analyses"
# Each attempt publishes into MEDIA_ROOT/analyses/<code hex>/attempt-<n>/ (results_dir names it).
ATTEMPT_FOLDER_PREFIX = "attempt-"

# Parameter choices, in the engine's own parameter schema (gradcam3d.manifest.DEFAULT_PARAMS,
# gradcam3d.preprocess.PreprocessParams). They mirror the engine's lists; the web side may not
# import gradcam3d, and the engine refuses anything it does not know anyway.
METHODS = ("gradcam", "gradcam++", "layercam", "hirescam")
# LayerCAM and HiResCAM weight every position by its own gradient: gradient pooling does not
# apply to them (the engine records their pooling as None and refuses "temporal").
ELEMENTWISE_METHODS = ("layercam", "hirescam")
POOLINGS = ("global", "temporal")
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot", "parula", "cividis", "bone")
RESIZE_MODES = ("stretch", "center_crop", "letterbox")
SCALINGS = ("unit", "symmetric", "raw", "mean_std")
# "auto": what the model's own input layers expect (inspection's `suggested_scaling`: a model
# starting with Rescaling(1/255) gets raw 0-255 values, not values divided by 255 twice).
AUTO_SCALING = "auto"
INFERENCE_FRAMES = ("key", "all")
MAX_FRAME_STRIDE = 16

# The original tool's behaviour is the default: Grad-CAM pooled over (T,H,W), Otsu boxes
# (bbox_threshold None), jet at alpha 0.3, every 2nd frame from the 2nd, stretched to the
# model's size, values in [0, 1].
DEFAULT_PARAMS: dict[str, Any] = {
    "method": "gradcam",
    "pooling": "global",
    "bbox_threshold": None,
    "colormap": "jet",
    "alpha": 0.3,
    "top_k": 5,
    "inference_frames": "key",
}
DEFAULT_PREPROCESS: dict[str, Any] = {
    "frame_stride": 2,
    "frame_offset": 1,
    "resize_mode": "stretch",
    "scaling": AUTO_SCALING,
    "mean": None,
    "std": None,
}
PARAM_NAMES = frozenset({"layers", "preprocess", *DEFAULT_PARAMS})


class AnalysisError(Exception):
    """A user-facing refusal: `str(exc)` is a complete sentence; `field` names the bad input."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --------------------------------------------------------------------------- parameters
def _label(name: str) -> str:
    return name.replace("_", " ")


def _shown(value: Any, *, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _choice(*, value: Any, name: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise AnalysisError(
            f"“{_shown(value)}” is not a valid {_label(name)}; choose one of: {', '.join(choices)}.", field=name
        )
    return text


def _number(*, value: Any, name: str, low: float, high: float, integer: bool = False) -> float | int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnalysisError(f"The {_label(name)} must be a number, not “{_shown(value)}”.", field=name) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise AnalysisError(f"The {_label(name)} must be between {low:g} and {high:g} (got {number:g}).", field=name)
    if integer:
        if number != int(number):
            raise AnalysisError(f"The {_label(name)} must be a whole number.", field=name)
        return int(number)
    return number


def _channel_values(*, value: Any, name: str, channels: int, positive: bool) -> list[float] | None:
    if value is None or value == "" or value == []:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, channels):
        raise AnalysisError(f"Give one {name} value or one per channel ({channels}).", field=name)
    numbers = [float(_number(value=item, name=name, low=-1e6, high=1e6)) for item in values]
    if positive and any(number <= 0 for number in numbers):
        raise AnalysisError(f"The {name} values must be positive.", field=name)
    return numbers


def _preprocess_normalised(*, classifier: Classifier, value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise AnalysisError("The preprocessing options must be a set of named values.", field="preprocess")
    unknown = sorted(set(value) - set(DEFAULT_PREPROCESS))
    if unknown:
        raise AnalysisError(f"Unknown preprocessing option(s): {', '.join(unknown)}.", field=unknown[0])
    merged = {**DEFAULT_PREPROCESS, **value}
    channels = int(classifier.input_shape[-1]) if classifier.input_shape else 3
    normalised = {
        "frame_stride": _number(value=merged["frame_stride"], name="frame_stride", low=1, high=MAX_FRAME_STRIDE, integer=True),
        "frame_offset": _number(value=merged["frame_offset"], name="frame_offset", low=0, high=MAX_FRAME_STRIDE, integer=True),
        "resize_mode": _choice(value=merged["resize_mode"], name="resize_mode", choices=RESIZE_MODES),
        "scaling": _scaling(classifier=classifier, value=merged["scaling"]),
        "mean": _channel_values(value=merged["mean"], name="mean", channels=channels, positive=False),
        "std": _channel_values(value=merged["std"], name="std", channels=channels, positive=True),
    }
    if normalised["scaling"] == "mean_std" and (normalised["mean"] is None or normalised["std"] is None):
        raise AnalysisError("Scaling by mean and standard deviation needs both the mean and the std.", field="scaling")
    return normalised


def preprocess_params_normalise(*, classifier: Classifier, value: Any) -> dict[str, Any]:
    """The preprocessing options with defaults filled in and "auto" scaling resolved."""
    return _preprocess_normalised(classifier=classifier, value=value)


def suggested_scaling(*, classifier: Classifier) -> tuple[str, str]:
    """(scaling, reason) the model's own input layers ask for, from its inspection; the original
    tool's [0, 1] when it says nothing."""
    inspection = classifier.inspection or {}
    name = str(inspection.get("suggested_scaling") or "unit")
    return (name if name in SCALINGS else "unit"), str(inspection.get("scaling_reason") or "")


def _scaling(*, classifier: Classifier, value: Any) -> str:
    chosen = _choice(value=value if value not in (None, "") else AUTO_SCALING, name="scaling",
                     choices=(AUTO_SCALING, *SCALINGS))
    return suggested_scaling(classifier=classifier)[0] if chosen == AUTO_SCALING else chosen


def _pooling(*, method: str, value: Any) -> str | None:
    if method not in ELEMENTWISE_METHODS:
        return _choice(value=value if value not in (None, "") else "global", name="pooling", choices=POOLINGS)
    if value not in (None, "", "global"):
        raise AnalysisError(
            f"{'LayerCAM' if method == 'layercam' else 'HiResCAM'} weights every position by its own "
            "gradient, so gradient pooling does not apply to it: leave pooling at its default.",
            field="pooling",
        )
    return None


def analysis_params_normalise(*, classifier: Classifier, params: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter with defaults filled in, validated against the classifier.

    The result is in the engine's parameter schema (without `expected_class` and
    `class_labels`, which come from the analysis and the classifier when it runs).
    """
    params = dict(params or {})
    unknown = sorted(set(params) - PARAM_NAMES)
    if unknown:
        raise AnalysisError(f"Unknown analysis parameter(s): {', '.join(unknown)}.", field=unknown[0])
    merged = {**DEFAULT_PARAMS, **params}
    available = [str(layer) for layer in classifier.conv3d_layers or []]
    layers = merged.get("layers") or list(available)
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, (list, tuple)):
        raise AnalysisError("The layers must be a list of Conv3D layer names.", field="layers")
    layers = list(dict.fromkeys(str(layer) for layer in layers))
    missing = [layer for layer in layers if layer not in available]
    if missing:
        raise AnalysisError(
            f"The model has no Conv3D layer named {', '.join(_shown(name) for name in missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}; its layers are: {', '.join(available)}.",
            field="layers",
        )
    if not layers:
        raise AnalysisError("The model has no Conv3D layer to explain.", field="layers")
    wanted = set(layers)
    method = _choice(value=merged["method"], name="method", choices=METHODS)
    threshold = merged["bbox_threshold"]
    if threshold is not None and threshold != "" and str(threshold).strip().lower() != "otsu":
        threshold = _number(value=threshold, name="bbox_threshold", low=0.01, high=0.99)
    else:
        threshold = None  # Otsu's threshold per frame, as the original tool
    return {
        # Keep the model's order (outermost first) whatever order the user picked them in.
        "layers": [layer for layer in available if layer in wanted],
        "method": method,
        "pooling": _pooling(method=method, value=merged["pooling"]),
        "bbox_threshold": threshold,
        "colormap": _choice(value=merged["colormap"], name="colormap", choices=COLORMAPS),
        "alpha": _number(value=merged["alpha"], name="alpha", low=0.0, high=1.0),
        "top_k": _number(value=merged["top_k"], name="top_k", low=1, high=max(1, classifier.num_classes), integer=True)
        if merged["top_k"] != DEFAULT_PARAMS["top_k"] else min(DEFAULT_PARAMS["top_k"], max(1, classifier.num_classes)),
        "inference_frames": _choice(value=merged["inference_frames"], name="inference_frames", choices=INFERENCE_FRAMES),
        "preprocess": _preprocess_normalised(classifier=classifier, value=merged.get("preprocess")),
    }


def _expected_class_checked(*, classifier: Classifier, expected_class: Any) -> int | None:
    if expected_class is None or expected_class == "":
        return None
    text = str(expected_class).strip()
    try:
        if len(text) > len(str(classifier.num_classes)) + 1:  # never int() a huge string
            raise ValueError(text)
        value = int(text)
    except (TypeError, ValueError):
        if text.isdigit():
            raise AnalysisError(
                f"The expected class {_shown(text, limit=12)} is out of range: this model has "
                f"{classifier.num_classes} classes, numbered 0 to {classifier.num_classes - 1}.",
                field="expected_class",
            ) from None
        raise AnalysisError(f"The expected class must be a class number, not “{_shown(expected_class)}”.",
                            field="expected_class") from None
    if not 0 <= value < classifier.num_classes:
        raise AnalysisError(
            f"The expected class {value} is out of range: this model has {classifier.num_classes} "
            f"classes, numbered 0 to {classifier.num_classes - 1}.",
            field="expected_class",
        )
    return value


def _team_checked(*, team: Team | None, user: Any, classifier: Classifier, video: Video) -> Team | None:
    """The team an analysis may be shared with: one of the user's teams whose members can all
    see both inputs (results show the video's frames and the model's decisions)."""
    if team is None:
        return None
    if not TeamMembership.objects.filter(team=team, user=user).exists():
        raise AnalysisError(f"You are not a member of the team “{team.name}”.", field="team")
    problem = analysis_share_problem(classifier=classifier, video=video, team=team)
    if problem:
        raise AnalysisError(problem, field="team")
    return team


def analysis_share_problem(*, classifier: Classifier, video: Video, team: Team) -> str:
    """Why an analysis of these inputs may not be shared with `team` ("" when it may).

    An analysis may be shared only with people who can see both of its inputs: a member of a
    team sees an input when it is shared with that team (or is their own).
    """
    for obj, noun in ((video, "video"), (classifier, "model")):
        if obj.team_id != team.pk:
            return (
                f"Share the {noun} “{obj.name}” with {team.name} first: an analysis can be shared only "
                "with people who can see both its model and its video."
            )
    return ""


def _check_active_quota(*, user: Any) -> None:
    limit = active_analyses_limit(user=user)
    active = active_analyses_count(user=user)
    if active >= limit:
        raise AnalysisError(
            f"You already have {active} analyses queued or running, the most allowed at once ({limit}): "
            "wait until one finishes, or cancel one, then try again."
        )


# --------------------------------------------------------------------------- create, re-run
def _task_name(analysis_id: int) -> str:
    return f"analysis-{analysis_id}"


def _enqueue(analysis_id: int) -> bool:
    """Queue the task (called on commit). A broker failure is logged and leaves the row queued:
    the reaper queues it again later (`analysis_reap_stale`)."""
    from django_q.tasks import async_task

    try:
        task_id = async_task(TASK_FUNCTION, analysis_id, task_name=_task_name(analysis_id), group="analyses")
    except Exception:  # noqa: BLE001 - the row is committed; do not fail the user's request
        logger.exception("could not enqueue analysis %s", analysis_id)
        return False
    Analysis.objects.filter(pk=analysis_id).update(task_id=str(task_id or "")[:64])
    return True


def analysis_create(
    *,
    user: Any,
    classifier: Classifier,
    video: Video,
    expected_class: int | None,
    params: dict[str, Any] | None,
    team: Team | None = None,
    title: str = "",
    parent: Analysis | None = None,
) -> Analysis:
    if not classifiers_usable_by(user=user).filter(pk=classifier.pk).exists():
        raise AnalysisError("That model does not exist or is not available to you.", field="classifier")
    if not videos_usable_by(user=user).filter(pk=video.pk).exists():
        raise AnalysisError("That video does not exist or is not available to you.", field="video")
    team = _team_checked(team=team, user=user, classifier=classifier, video=video)
    _check_active_quota(user=user)
    expected = _expected_class_checked(classifier=classifier, expected_class=expected_class)
    normalised = analysis_params_normalise(classifier=classifier, params=params)
    with transaction.atomic():
        analysis = Analysis.objects.create(
            owner=user,
            team=team,
            classifier=classifier,
            video=video,
            parent=parent,
            title=(title or "").strip()[:200],
            expected_class=expected,
            params=normalised,
            status=AnalysisStatus.QUEUED,
            stage="queued",
            max_attempts=settings.GRADCAM_ANALYSIS_MAX_ATTEMPTS,
        )
        audit_log(
            actor=user,
            action="analysis.created",
            target=analysis,
            data={
                "classifier": str(classifier.code),
                "video": str(video.code),
                "expected_class": expected,
                "params": normalised,
                "parent": str(parent.code) if parent else None,
            },
        )
        analysis_id = analysis.pk
        transaction.on_commit(lambda: _enqueue(analysis_id))
    return analysis


_UNCHANGED: Any = object()


def analysis_rerun(
    *,
    user: Any,
    analysis: Analysis,
    params_changes: dict[str, Any] | None = None,
    expected_class: Any = _UNCHANGED,
    title: str | None = None,
) -> Analysis:
    """A new analysis of the same model and video with some parameters changed, linked to `analysis`."""
    if not analyses_visible_to(user=user).filter(pk=analysis.pk).exists():
        raise AnalysisError("That analysis does not exist or is not available to you.")
    team = analysis.team
    # The re-run is shared like the original only where that is still allowed: the user is in
    # the team and the team can still see both inputs; otherwise it is private.
    if team is not None and (
        not TeamMembership.objects.filter(team=team, user=user).exists()
        or analysis_share_problem(classifier=analysis.classifier, video=analysis.video, team=team)
    ):
        team = None
    return analysis_create(
        user=user,
        classifier=analysis.classifier,
        video=analysis.video,
        expected_class=analysis.expected_class if expected_class is _UNCHANGED else expected_class,
        params={**(analysis.params or {}), **(params_changes or {})},
        team=team,
        title=analysis.title if title is None else title,
        parent=analysis,
    )


# --------------------------------------------------------------------------- state machine
def analysis_transition(
    *, analysis_id: int, from_status: str, to_status: str, where: dict[str, Any] | None = None, **fields: Any
) -> bool:
    """Compare-and-set the status; returns whether this caller won.

    `where` adds conditions to the compare (a worker passes its `worker_lease` and `attempts`, so
    it can only move the row while the row is still its own attempt); `fields` are written.
    """
    return bool(
        Analysis.objects.filter(pk=analysis_id, status=from_status, **(where or {})).update(status=to_status, **fields)
    )


def analysis_cancel(*, user: Any, analysis: Analysis) -> Analysis:
    """Queued: cancelled now. Running: flagged; the worker kills the engine and marks it cancelled."""
    if not can_write(user=user, obj=analysis):
        raise AnalysisError("You can view this analysis but not cancel it.")
    now = timezone.now()
    if analysis_transition(
        analysis_id=analysis.pk, from_status=AnalysisStatus.QUEUED, to_status=AnalysisStatus.CANCELLED,
        cancel_requested=True, finished_at=now, stage="cancelled", error_message="Cancelled by the user.",
    ):
        audit_log(actor=user, action="analysis.cancelled", target=analysis, data={"was": "queued"})
    elif Analysis.objects.filter(pk=analysis.pk, status=AnalysisStatus.RUNNING).update(cancel_requested=True):
        audit_log(actor=user, action="analysis.cancel_requested", target=analysis, data={"was": "running"})
    else:
        analysis.refresh_from_db()
        raise AnalysisError(f"This analysis has already {analysis.status}; there is nothing to cancel.")
    analysis.refresh_from_db()
    return analysis


def analysis_results_path(analysis: Analysis) -> Path:
    return Path(settings.MEDIA_ROOT) / RESULTS_FOLDER / analysis.code.hex


def analysis_delete(*, user: Any, analysis: Analysis) -> None:
    """Delete a finished (or queued) analysis with its results folder."""
    if not can_write(user=user, obj=analysis):
        raise AnalysisError("You can view this analysis but not delete it.")
    if analysis.status == AnalysisStatus.RUNNING:
        raise AnalysisError("This analysis is running: cancel it and wait until it stops before deleting it.")
    with transaction.atomic():
        if analysis.status == AnalysisStatus.QUEUED and not analysis_transition(
            analysis_id=analysis.pk, from_status=AnalysisStatus.QUEUED, to_status=AnalysisStatus.CANCELLED,
            cancel_requested=True, finished_at=timezone.now(),
        ):
            raise AnalysisError("This analysis has just started: cancel it and wait until it stops.")
        audit_log(
            actor=user, action="analysis.deleted", target=analysis,
            data={"status": analysis.status, "results_dir": analysis.results_dir,
                  "classifier": str(analysis.classifier.code), "video": str(analysis.video.code)},
        )
        results = analysis_results_path(analysis)
        analysis.delete()
        transaction.on_commit(lambda: shutil.rmtree(results, ignore_errors=True))


# --------------------------------------------------------------------------- leases and the reaper
def _process_start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # The command name (field 2) may contain spaces; the fields after it do not.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_lease(pid: int) -> str:
    """"<host>:<pid>:<start ticks>": identifies one process even after its pid is reused."""
    return f"{socket.gethostname()}:{pid}:{_process_start_ticks(pid) or '?'}"


def current_worker_lease() -> str:
    return process_lease(os.getpid())


def worker_lease_is_dead(lease: str) -> bool:
    """True only when the lease's process is certainly gone (same host, pid gone or reused)."""
    try:
        host, pid_text, ticks = lease.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False  # another machine's worker: only its heartbeat can tell
    current_ticks = _process_start_ticks(pid)
    return current_ticks is None or (ticks != "?" and current_ticks != ticks)


def pending_broker_tasks() -> tuple[set[str], set[str]] | None:
    """(task ids, task names) waiting in or taken from the ORM broker's queue (until acknowledged,
    after its result is saved); None with another broker, which cannot be listed."""
    from django_q.models import OrmQ

    if not settings.Q_CLUSTER.get("orm"):
        return None
    ids: set[str] = set()
    names: set[str] = set()
    for entry in OrmQ.objects.all():
        try:
            ids.add(str(entry.task_id()))
            names.add(str(entry.name()))
        except Exception:  # noqa: BLE001 - an undecodable entry (another SECRET_KEY) is not ours
            continue
    return ids, names


def task_is_pending(*, task_id: str, task_name: str, pending: tuple[set[str], set[str]] | None) -> bool:
    """Whether the django-q2 task of a queued row is still waiting in the broker."""
    from django_q.models import Task

    if pending is not None:
        ids, names = pending
        return task_id in ids or task_name in names
    # Another broker (Redis): its queue cannot be searched; a task is pending until its result exists.
    return bool(task_id) and not Task.objects.filter(id=task_id).exists()


def _reap_lost_queued(*, now: datetime, counts: dict[str, int]) -> None:
    """Queued rows whose task is gone (enqueueing failed at commit, a broker lost it): queue them
    again, or fail them in words when no attempt is left."""
    lost_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    candidates = list(
        Analysis.objects.filter(status=AnalysisStatus.QUEUED, cancel_requested=False, created_at__lt=lost_before)
        .exclude(started_at__gte=lost_before)
        .only("pk", "task_id", "attempts", "max_attempts")
    )
    if not candidates:
        return
    pending = pending_broker_tasks()
    for analysis in candidates:
        if task_is_pending(task_id=analysis.task_id, task_name=_task_name(analysis.pk), pending=pending):
            continue
        if analysis.attempts >= analysis.max_attempts:
            won = Analysis.objects.filter(pk=analysis.pk, status=AnalysisStatus.QUEUED, cancel_requested=False).update(
                status=AnalysisStatus.FAILED, finished_at=now, stage="failed",
                error_message=(
                    f"This analysis was queued but never started: its task was lost after attempt "
                    f"{analysis.attempts} of {analysis.max_attempts}. Re-run it to try again."
                ),
            )
            counts["failed"] += won
        elif _enqueue(analysis.pk):
            logger.warning("analysis %s was queued without a pending task: queued again", analysis.pk)
            counts["enqueued_again"] += 1


def analysis_reap_stale(*, now: datetime | None = None) -> dict[str, int]:
    """Fail, re-queue or finish cancelling runs whose worker died; re-enqueue lost queued rows;
    remove the working folders that dead workers and engines left behind.

    A running row is dead when its heartbeat is older than GRADCAM_HEARTBEAT_STALE_SECONDS or
    its worker process (same host) is gone. While attempts remain it goes back to the queue,
    otherwise it fails with a message saying what happened. A queued row older than that with
    no pending django-q2 task is enqueued again (a duplicate task is harmless: the queued ->
    running compare-and-set lets only one run it).
    """
    from analyses import runner

    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    counts = {"requeued": 0, "failed": 0, "cancelled": 0, "enqueued_again": 0, "work_folders_removed": 0}
    running = Analysis.objects.filter(status=AnalysisStatus.RUNNING)
    for analysis in running.only("pk", "heartbeat_at", "started_at", "worker_lease", "attempts",
                                 "max_attempts", "cancel_requested"):
        last_sign_of_life = analysis.heartbeat_at or analysis.started_at
        stale = last_sign_of_life is None or last_sign_of_life < stale_before
        if not stale and not (analysis.worker_lease and worker_lease_is_dead(analysis.worker_lease)):
            continue
        # The compare-and-set also checks the heartbeat did not move since we read it.
        guard = {"heartbeat_at": analysis.heartbeat_at}
        if analysis.cancel_requested:
            won = Analysis.objects.filter(pk=analysis.pk, status=AnalysisStatus.RUNNING, **guard).update(
                status=AnalysisStatus.CANCELLED, finished_at=now, stage="cancelled",
                error_message="Cancelled by the user.",
            )
            counts["cancelled"] += won
        elif analysis.attempts < analysis.max_attempts:
            with transaction.atomic():
                won = Analysis.objects.filter(pk=analysis.pk, status=AnalysisStatus.RUNNING, **guard).update(
                    status=AnalysisStatus.QUEUED, stage="queued again: the worker running it stopped",
                    progress=0.0, worker_lease="", heartbeat_at=None,
                )
                if won:
                    analysis_id = analysis.pk
                    transaction.on_commit(lambda analysis_id=analysis_id: _enqueue(analysis_id))
            counts["requeued"] += won
        else:
            won = Analysis.objects.filter(pk=analysis.pk, status=AnalysisStatus.RUNNING, **guard).update(
                status=AnalysisStatus.FAILED, finished_at=now, stage="failed",
                error_message=(
                    f"The worker running this analysis stopped responding (attempt {analysis.attempts} of "
                    f"{analysis.max_attempts}), so it was stopped. Re-run it to try again."
                ),
            )
            counts["failed"] += won
        if won:
            logger.warning("reaped analysis %s (heartbeat %s)", analysis.pk, analysis.heartbeat_at)
    _reap_lost_queued(now=now, counts=counts)
    counts["work_folders_removed"] = runner.work_folders_sweep()
    return counts


def reaper_schedule_ensure() -> None:
    """One django-q2 Schedule running the reaper every minute (idempotent, duplicates removed)."""
    from django_q.models import Schedule

    schedules = Schedule.objects.filter(name=REAPER_SCHEDULE_NAME).order_by("pk")
    first = schedules.first()
    if first is None:
        Schedule.objects.create(
            name=REAPER_SCHEDULE_NAME, func=REAPER_FUNCTION,
            schedule_type=Schedule.MINUTES, minutes=1, repeats=-1,
        )
        first = schedules.first()
    if first is not None:
        # Two workers starting together may both have created one.
        Schedule.objects.filter(name=REAPER_SCHEDULE_NAME).exclude(pk=first.pk).delete()
