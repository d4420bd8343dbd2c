"""The "Shared with me" count in the navigation (one COUNT query per signed-in page)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from analyses.sharing.selectors import shared_new_count


def shared_with_me(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: pages that do not render the navigation (JSON, files) never run the query.
    return {"shared_new_count": lambda: shared_new_count(user=user)}
