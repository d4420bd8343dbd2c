"""What an object page's "Access" panel shows: who can see the object and how, and the forms
to share, make links and revoke (for those allowed to)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from accounts.selectors import teams_of
from analyses.compare.models import Comparison
from analyses.runs.models import Analysis, AnalysisStatus
from analyses.sharing.selectors import share_links_of, share_links_of_comparison, shares_of
from analyses.sharing.services import (
    LINK_DEFAULT_DAYS,
    LINK_MAX_DAYS,
    Shareable,
    comparison_link_problem,
    link_problem,
    may_revoke,
    may_share,
)


def _link_rows(*, links: Any, allowed: bool) -> list[dict[str, Any]]:
    if not allowed:
        return []
    now = timezone.now()
    rows = []
    for link in links[:50]:
        state = "revoked" if link.revoked_at else ("expired" if link.expires_at <= now else "live")
        rows.append({"link": link, "state": state, "can_revoke": state == "live"})
    return rows


def sharing_panel(*, user: Any, target: Shareable) -> dict[str, Any]:
    allowed = may_share(user=user, target=target)
    shares: list[dict[str, Any]] = [
        {"share": share, "can_revoke": may_revoke(user=user, share=share)}
        for share in shares_of(target=target)
    ]
    panel: dict[str, Any] = {
        "target": target,
        "kind": target._meta.model_name,
        "may_share": allowed,
        "owner_name": target.owner.get_username(),
        "team": target.team,
        "shares": shares
        if allowed
        else [row for row in shares if row["can_revoke"] or row["share"].user_id == user.pk],
        "teams": list(teams_of(user=user)) if allowed else [],
        "links": [],
        "link_problem": "",
        "link_default_days": LINK_DEFAULT_DAYS,
        "link_max_days": LINK_MAX_DAYS,
    }
    if isinstance(target, Analysis):
        panel["links"] = _link_rows(links=share_links_of(analysis=target), allowed=allowed)
        panel["link_problem"] = link_problem(user=user, analysis=target) or (
            "" if target.status == AnalysisStatus.SUCCEEDED else "Share links are for finished analyses."
        )
    return {"sharing": panel}


def comparison_link_panel(*, user: Any, comparison: Comparison) -> dict[str, Any]:
    """The share-link panel of a saved comparison: for its owner only."""
    if comparison.owner_id != getattr(user, "pk", None):
        return {}
    return {
        "link_panel": {
            "comparison": comparison,
            "problem": comparison_link_problem(user=user, comparison=comparison),
            "links": _link_rows(links=share_links_of_comparison(comparison=comparison), allowed=True),
            "default_days": LINK_DEFAULT_DAYS,
            "max_days": LINK_MAX_DAYS,
        }
    }
