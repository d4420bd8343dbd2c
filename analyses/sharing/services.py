"""Sharing: read-only shares with a user or a team, and share links. Every change is audited.

Rules (issue 8, item 12, and issue 10):
- only someone who may change an object (its owner, or an owner of its team) may share it or
  make a link; a share is read-only, so whoever receives it can neither edit nor re-share;
- an analysis may be shared only with people who can see both of its inputs: the form offers
  to share the inputs too, which only someone who may share them can do;
- a share link shows an analysis to anyone holding it, so only someone who may share the
  analysis and both of its inputs can make one; it stops working once revoked, expired, or once
  its maker may no longer share them;
- a share is revoked by whoever may change the object, or by the person who made it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Team
from accounts.selectors import user_is_team_member
from analyses.access import can_write
from analyses.compare.models import Comparison
from analyses.library.models import Classifier, Video
from analyses.library.selectors import classifiers_visible_to, videos_visible_to
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.sharing.models import Share, SharedInboxVisit, ShareLink
from audit.log import audit_log

LINK_DEFAULT_DAYS = 7
LINK_MAX_DAYS = 90
LINK_MAX_ACTIVE_PER_ANALYSIS = 20
SHARES_MAX_PER_OBJECT = 200

Shareable = Analysis | Classifier | Video


class SharingError(Exception):
    """A user-facing refusal: `str(exc)` is a complete sentence."""


def _noun(target: Shareable) -> str:
    return {"analysis": "analysis", "classifier": "model", "video": "video"}[target._meta.model_name or ""]


def _target_field(target: Shareable) -> str:
    return target._meta.model_name or ""


def may_share(*, user: Any, target: Shareable) -> bool:
    return can_write(user=user, obj=target)


def _recipient_sees(*, target: Classifier | Video, user: Any | None, team: Team | None) -> bool:
    """Whether the recipient (a user, or every member of a team) can see an input."""
    if user is not None:
        visible = classifiers_visible_to if isinstance(target, Classifier) else videos_visible_to
        return visible(user=user, include_archived=True).filter(pk=target.pk).exists()
    assert team is not None
    return (
        target.team_id == team.pk
        or Share.objects.filter(**{_target_field(target): target, "team": team}).exists()
    )


def _resolve_recipient(*, actor: Any, username: str, team: Team | None) -> tuple[Any | None, Team | None]:
    username = (username or "").strip()[:150]
    if bool(username) == (team is not None):
        raise SharingError("Choose either a user or a team to share with.")
    if team is not None:
        if not user_is_team_member(user=actor, team=team):
            raise SharingError(f"You are not a member of the team “{team.name}”.")
        return None, team
    user = get_user_model().objects.filter(username__iexact=username, is_active=True).first()
    if user is None:
        raise SharingError(f"There is no active user called “{username}”.")
    if user.pk == actor.pk:
        raise SharingError("You cannot share with yourself.")
    return user, None


def _inputs_problem(
    *, analysis: Analysis, user: Any | None, team: Team | None, actor: Any, with_inputs: bool
) -> list[Classifier | Video]:
    """The inputs to share along with the analysis; refuses when the recipient cannot see one
    and the actor may not (or did not choose to) share it."""
    missing: list[Classifier | Video] = [
        obj
        for obj in (analysis.classifier, analysis.video)
        if not _recipient_sees(target=obj, user=user, team=team)
    ]
    for obj in missing:
        if not with_inputs or not may_share(user=actor, target=obj):
            who = user.get_username() if user is not None else f"the team {team.name if team else ''}"
            hint = (
                " Tick “also share its model and video” to share them too."
                if may_share(user=actor, target=obj)
                else " Ask its owner to share it with them first."
            )
            raise SharingError(
                f"{who} cannot see the {_noun(obj)} “{obj.name}”: an analysis can be shared only with people "
                f"who can see both its model and its video.{hint}"
            )
    return missing


def _share_one(*, actor: Any, target: Shareable, user: Any | None, team: Team | None) -> tuple[Share, bool]:
    owner_id = target.owner_id
    if user is not None and user.pk == owner_id:
        raise SharingError(f"{user.get_username()} owns this {_noun(target)} already.")
    if team is not None and target.team_id == team.pk:
        raise SharingError(f"This {_noun(target)} belongs to the team “{team.name}” already.")
    field = _target_field(target)
    existing = Share.objects.filter(**{field: target}, user=user, team=team).first()
    if existing is not None:
        return existing, False
    if Share.objects.filter(**{field: target}).count() >= SHARES_MAX_PER_OBJECT:
        raise SharingError(
            f"This {_noun(target)} is shared {SHARES_MAX_PER_OBJECT} times already, the most allowed."
        )
    try:
        with transaction.atomic():
            share = Share.objects.create(**{field: target}, user=user, team=team, created_by=actor)
    except IntegrityError:  # the same share made at the same moment by another request
        return Share.objects.get(**{field: target}, user=user, team=team), False
    audit_log(
        actor=actor,
        action="share.created",
        target=target,
        data={"share": str(share.code), "with": share.recipient_name, "role": share.role},
    )
    return share, True


def share_create(
    *, actor: Any, target: Shareable, username: str = "", team: Team | None = None, with_inputs: bool = False
) -> list[Share]:
    """Share `target` read-only with a user (by username) or a team; for an analysis, also its
    inputs when the recipient cannot see them and `with_inputs` is chosen. Returns the shares
    made (empty when everything was shared already)."""
    if not may_share(user=actor, target=target):
        raise SharingError(f"Only the owner of this {_noun(target)}, or an owner of its team, can share it.")
    user, team = _resolve_recipient(actor=actor, username=username, team=team)
    with transaction.atomic():
        inputs = (
            _inputs_problem(analysis=target, user=user, team=team, actor=actor, with_inputs=with_inputs)
            if isinstance(target, Analysis)
            else []
        )
        made = []
        for obj in [*inputs, target]:
            share, new = _share_one(actor=actor, target=obj, user=user, team=team)
            if new:
                made.append(share)
    return made


def may_revoke(*, user: Any, share: Share) -> bool:
    return share.created_by_id == getattr(user, "pk", None) or may_share(user=user, target=share.target)


def share_revoke(*, actor: Any, share: Share, as_admin: bool = False) -> None:
    """Revoke a share (`as_admin`: a staff member in the admin site, who may revoke any)."""
    if not (as_admin and getattr(actor, "is_staff", False)) and not may_revoke(user=actor, share=share):
        raise SharingError("Only the person who shared this, or whoever may change it, can revoke the share.")
    target, code, recipient = share.target, str(share.code), share.recipient_name
    share.delete()
    audit_log(actor=actor, action="share.revoked", target=target, data={"share": code, "with": recipient})


# --------------------------------------------------------------------------- share links
def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_problem(*, user: Any, analysis: Analysis) -> str:
    """Why `user` may not make (or keep alive) a link to `analysis` ("" when they may)."""
    if not getattr(user, "is_active", False):
        return "Its maker's account is deactivated."
    if not may_share(user=user, target=analysis):
        return "Only the owner of this analysis, or an owner of its team, can make a share link."
    for obj in (analysis.classifier, analysis.video):
        if not may_share(user=user, target=obj):
            return (
                f"A share link shows this analysis to anyone who has it: only someone who may share both its "
                f"model and its video can make one, and you may not share the {_noun(obj)} “{obj.name}”."
            )
    return ""


def comparison_link_problem(*, user: Any, comparison: Comparison) -> str:
    """Why `user` may not make (or keep alive) a link to a saved comparison ("" when they may):
    they must own it and be allowed to make a link to every one of its analyses."""
    if comparison.owner_id != getattr(user, "pk", None):
        return "Only the owner of this comparison can make a share link to it."
    analyses = [
        column.analysis
        for column in comparison.columns.select_related("analysis__classifier", "analysis__video")
    ]
    if not analyses:
        return "This comparison has no analyses left."
    for analysis in analyses:
        problem = link_problem(user=user, analysis=analysis)
        if problem:
            return f"“{analysis}”: {problem}"
        if analysis.status != AnalysisStatus.SUCCEEDED:
            return f"“{analysis}” has no results: only finished analyses can be shared by link."
    return ""


def _bounded_days(days: Any) -> int:
    try:
        value = int(str(days).strip() or LINK_DEFAULT_DAYS)
    except (TypeError, ValueError):
        raise SharingError("The expiry is a whole number of days.") from None
    if not 1 <= value <= LINK_MAX_DAYS:
        raise SharingError(f"A share link expires after 1 to {LINK_MAX_DAYS} days.")
    return value


def share_link_create(
    *, actor: Any, target: Analysis | Comparison, days: Any = LINK_DEFAULT_DAYS, label: str = ""
) -> tuple[ShareLink, str]:
    """A new link to an analysis or a saved comparison; returns it with its token, which is
    shown once and never stored."""
    if isinstance(target, Comparison):
        field, problem = "comparison", comparison_link_problem(user=actor, comparison=target)
    else:
        field, problem = "analysis", link_problem(user=actor, analysis=target)
        if not problem and target.status != AnalysisStatus.SUCCEEDED:
            problem = "Only a finished analysis can be shared by link."
    if problem:
        raise SharingError(problem)
    valid_days = _bounded_days(days)
    now = timezone.now()
    live = ShareLink.objects.filter(**{field: target}, revoked_at__isnull=True, expires_at__gt=now)
    if live.count() >= LINK_MAX_ACTIVE_PER_ANALYSIS:
        raise SharingError(
            f"This has {LINK_MAX_ACTIVE_PER_ANALYSIS} live share links, the most allowed: revoke one first."
        )
    token = secrets.token_urlsafe(32)
    link = ShareLink.objects.create(
        token_sha256=token_digest(token),
        **{field: target},
        label=(label or "").strip()[:100],
        created_by=actor,
        expires_at=now + timedelta(days=valid_days),
    )
    audit_log(
        actor=actor,
        action="share_link.created",
        target=target,
        data={"link": str(link.code), "label": link.label, "expires_at": link.expires_at.isoformat()},
    )
    return link, token


def _may_manage_links(*, user: Any, link: ShareLink) -> bool:
    if link.comparison is not None:
        return bool(link.comparison.owner_id == getattr(user, "pk", None))
    return link.analysis is not None and may_share(user=user, target=link.analysis)


def share_link_revoke(*, actor: Any, link: ShareLink, as_admin: bool = False) -> None:
    staff = as_admin and getattr(actor, "is_staff", False)
    if (
        not staff
        and link.created_by_id != getattr(actor, "pk", None)
        and not _may_manage_links(user=actor, link=link)
    ):
        raise SharingError(
            "Only the person who made this link, or whoever may change the analysis, can revoke it."
        )
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.revoked_by = actor
        link.save(update_fields=["revoked_at", "revoked_by"])
        audit_log(actor=actor, action="share_link.revoked", target=link.target, data={"link": str(link.code)})


def share_link_followed(*, link: ShareLink, address: str) -> None:
    """Count one visit of the link's page and record it (files it serves are not counted)."""
    ShareLink.objects.filter(pk=link.pk).update(last_used_at=timezone.now(), use_count=F("use_count") + 1)
    audit_log(
        actor=None,
        action="share_link.followed",
        target=link.target,
        data={"link": str(link.code), "address": address[:45]},
    )


def inbox_mark_seen(*, user: Any) -> None:
    SharedInboxVisit.objects.update_or_create(user=user, defaults={"seen_at": timezone.now()})
