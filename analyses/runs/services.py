"""Analyses: create and queue, re-run, cancel, delete. The run state itself is changed only by
`analyses.runs.state`; the parameters are checked by `analyses.runs.params`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.models import Team
from accounts.selectors import user_is_team_member
from analyses import storage
from analyses.access import can_write
from analyses.compare.services import difference_prefixes_of, differences_delete_folders
from analyses.library.models import Classifier, Video
from analyses.library.selectors import classifiers_usable_by, videos_usable_by
from analyses.quota import active_analyses_count, active_analyses_limit
from analyses.runs import state
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.runs.params import AnalysisError, analysis_params_normalise, expected_class_checked
from analyses.runs.selectors import analyses_visible_to
from audit.log import audit_log

logger = logging.getLogger(__name__)

RESULTS_FOLDER = "analyses"
# Each attempt publishes into MEDIA_ROOT/analyses/<code hex>/attempt-<n>/ (results_dir names it).
ATTEMPT_FOLDER_PREFIX = "attempt-"


def _team_checked(*, team: Team | None, user: Any, classifier: Classifier, video: Video) -> Team | None:
    """The team an analysis may be shared with: one of the user's teams whose members can all
    see both inputs (results show the video's frames and the model's decisions)."""
    if team is None:
        return None
    if not user_is_team_member(user=user, team=team):
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


# --------------------------------------------------------------------------- create, re-run
def analysis_create(
    *,
    user: Any,
    classifier: Classifier,
    video: Video,
    expected_class: int | str | None,  # a class number, or the form's text: expected_class_checked
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
    expected = expected_class_checked(classifier=classifier, expected_class=expected_class)
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
        state.analysis_enqueue_on_commit(analysis_id=analysis.pk)
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
        not user_is_team_member(user=user, team=team)
        or analysis_share_problem(classifier=analysis.classifier, video=analysis.video, team=team)
    ):
        team = None
    with transaction.atomic():
        rerun = analysis_create(
            user=user,
            classifier=analysis.classifier,
            video=analysis.video,
            expected_class=analysis.expected_class if expected_class is _UNCHANGED else expected_class,
            params={**(analysis.params or {}), **(params_changes or {})},
            team=team,
            title=analysis.title if title is None else title,
            parent=analysis,
        )
        # On the original too (analysis.created names the parent), so its own events show it.
        audit_log(
            actor=user,
            action="analysis.rerun",
            target=analysis,
            data={"rerun": str(rerun.code), "params_changes": params_changes or {}},
        )
    return rerun


# --------------------------------------------------------------------------- cancel, delete
def analysis_cancel(*, user: Any, analysis: Analysis) -> Analysis:
    """Queued: cancelled now. Running: flagged; the worker kills the engine and marks it cancelled."""
    if not can_write(user=user, obj=analysis):
        raise AnalysisError("You can view this analysis but not cancel it.")
    was = state.analysis_cancel_request(analysis_id=analysis.pk)
    if was == "queued":
        audit_log(actor=user, action="analysis.cancelled", target=analysis, data={"was": "queued"})
    elif was == "running":
        audit_log(actor=user, action="analysis.cancel_requested", target=analysis, data={"was": "running"})
    else:
        analysis.refresh_from_db()
        raise AnalysisError(f"This analysis has already {analysis.status}; there is nothing to cancel.")
    analysis.refresh_from_db()
    return analysis


def analysis_results_prefix(analysis: Analysis) -> str:
    """The storage name of the folder holding every attempt's results of `analysis`."""
    return f"{RESULTS_FOLDER}/{analysis.code.hex}"


def analysis_results_path(analysis: Analysis) -> Path:
    """This machine's copy of that folder (where a worker renames a finished attempt into)."""
    return Path(settings.MEDIA_ROOT) / analysis_results_prefix(analysis)


def _raw_map_hashes(manifest: dict[str, Any]) -> dict[str, str]:
    """Result file -> sha256, for the raw maps the manifest lists (role raw_maps)."""
    hashes: dict[str, str] = {}
    for record in manifest.get("files") or []:
        if isinstance(record, dict) and record.get("role") == "raw_maps" and record.get("path"):
            hashes[str(record["path"])] = str(record.get("sha256") or "")
    return hashes


def analysis_tombstone(analysis: Analysis) -> dict[str, Any]:
    """What the audit trail keeps of a deleted analysis: what it was (title, inputs with their
    names, codes and hashes, parameters, outcome) and the hashes of its raw maps, so a copy of
    its results can still be checked against the trail after the files are gone."""
    classifier, video = analysis.classifier, analysis.video
    return {
        "title": analysis.title,
        "status": analysis.status,
        "created_at": analysis.created_at.isoformat(),
        "owner": analysis.owner.get_username(),
        "team": analysis.team.name if analysis.team_id and analysis.team else None,
        "classifier": {"code": str(classifier.code), "name": classifier.name, "sha256": classifier.sha256},
        "video": {"code": str(video.code), "name": video.name, "sha256": video.sha256},
        "parent": str(analysis.parent.code) if analysis.parent_id and analysis.parent else None,
        "params": analysis.params,
        "expected_class": analysis.expected_class,
        "predicted_class": analysis.predicted_class,
        "input_hashes": analysis.input_hashes,
        "raw_maps_sha256": _raw_map_hashes(analysis.manifest or {}),
        "versions": analysis.versions,
        "results_dir": analysis.results_dir,
        "results_bytes": analysis.results_bytes,
    }


def analysis_delete(*, user: Any, analysis: Analysis) -> None:
    """Delete a finished (or queued) analysis with its results folder."""
    if not can_write(user=user, obj=analysis):
        raise AnalysisError("You can view this analysis but not delete it.")
    if analysis.status == AnalysisStatus.RUNNING:
        raise AnalysisError("This analysis is running: cancel it and wait until it stops before deleting it.")
    with transaction.atomic():
        if analysis.status == AnalysisStatus.QUEUED and not state.analysis_withdraw_queued(
            analysis_id=analysis.pk
        ):
            raise AnalysisError("This analysis has just started: cancel it and wait until it stops.")
        audit_log(actor=user, action="analysis.deleted", target=analysis, data=analysis_tombstone(analysis))
        prefix = analysis_results_prefix(analysis)
        # Its difference rows go with it (cascade): their folders are removed with its own.
        differences = difference_prefixes_of(analysis_id=analysis.pk)
        analysis.delete()
        transaction.on_commit(lambda: _delete_results(prefix=prefix, differences=differences))


def _delete_results(*, prefix: str, differences: list[str]) -> None:
    """Every attempt's results of a deleted analysis, and its differences: the objects in the
    media store and this machine's copy. The row is gone already (committed), so a failure is
    logged, not raised: the user's delete happened, and what is left no row names."""
    try:
        storage.media_delete_prefix(prefix=prefix)
    except Exception:  # noqa: BLE001 - see the docstring
        logger.exception("could not remove the results of a deleted analysis (%s)", prefix)
    differences_delete_folders(prefixes=differences)


# --------------------------------------------------------------------------- reads
READ_ACTIONS = ("analysis.viewed", "analysis.file_downloaded", "analysis.zip_downloaded")


def analysis_record_read(
    *, user: Any, analysis: Analysis, action: str, file_name: str = "", via: str = ""
) -> None:
    """Record that `user` read a result: its page (analysis.viewed), one result file downloaded
    (analysis.file_downloaded) or the ZIP (analysis.zip_downloaded), with the file's name.
    The page's images and video requests are not recorded one by one: the view is."""
    if action not in READ_ACTIONS:
        raise ValueError(f"Not a read of an analysis: {action!r}")
    data: dict[str, Any] = {"status": analysis.status}
    if file_name:
        data["file"] = file_name
    if via:
        data["via"] = via
    audit_log(actor=user, action=action, target=analysis, data=data)
