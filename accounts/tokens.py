"""Personal API tokens: made and revoked on the account page (or revoked in the admin), checked
by `accounts.authentication.ApiTokenAuthentication` on every API request.

A secret is "gcs_" + 43 URL-safe characters (32 random bytes). Only its SHA-256 is stored, so a
stolen database opens nothing; a token is found by that digest (an indexed equality lookup:
nothing is compared character by character in Python, so response times tell nothing about
the secret). The first 8 characters after "gcs_" are kept as `prefix` so people can tell their
tokens apart.

Errors: `ValidationError` (with the field name) for a name or an expiry that cannot be
honoured, or too many live tokens; `PermissionDenied` when someone other than the owner (or
staff) revokes; `ApiTokenRefused` (its message is the sentence to show) when a secret does not
authenticate.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiToken
from audit.log import audit_log

SECRET_MARKER = "gcs_"
PREFIX_CHARS = 8
MAX_NAME_CHARS = 100
MAX_LIVE_TOKENS_PER_USER = 20
MIN_EXPIRY_DAYS = 1
MAX_EXPIRY_DAYS = 365
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# token_urlsafe(32) gives 43 characters; anything else is not one of ours.
_SECRET_PATTERN = re.compile(r"gcs_[A-Za-z0-9_-]{43}")
MAX_SECRET_CHARS = len(SECRET_MARKER) + 43

INVALID_MESSAGE = "Invalid API token."
REVOKED_MESSAGE = "This API token was revoked."
EXPIRED_MESSAGE = "This API token has expired."
INACTIVE_MESSAGE = "The account this API token belongs to is deactivated."


class ApiTokenRefused(Exception):
    """A secret that does not authenticate; str() is the sentence to answer with."""


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --------------------------------------------------------------------------- selectors
def api_tokens_of(*, user: Any) -> QuerySet[ApiToken]:
    """The user's tokens, newest first (revoked and expired ones too: they are history)."""
    if not getattr(user, "is_authenticated", False):
        return ApiToken.objects.none()
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")


def api_token_get_for_user(*, code: uuid.UUID | str, user: Any) -> ApiToken:
    """The user's own token with this code; Http404 for anyone else's or a malformed code."""
    try:
        return api_tokens_of(user=user).get(code=code)
    except (ApiToken.DoesNotExist, ValueError, ValidationError) as exc:
        raise Http404("No such API token.") from exc


def live_api_tokens_of(*, user: Any, now: Any = None) -> QuerySet[ApiToken]:
    now = now or timezone.now()
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


# --------------------------------------------------------------------------- services
def _clean_name(name: Any) -> str:
    cleaned = str(name or "").strip()
    if not cleaned:
        raise ValidationError({"name": "Give the token a name, e.g. the script or machine that uses it."})
    if len(cleaned) > MAX_NAME_CHARS:
        raise ValidationError({"name": f"A token name is at most {MAX_NAME_CHARS} characters."})
    return cleaned


def _clean_expiry_days(expires_in_days: Any) -> int | None:
    if expires_in_days is None or expires_in_days == "":
        return None
    bounds = f"between {MIN_EXPIRY_DAYS} and {MAX_EXPIRY_DAYS} days, or leave it empty for no expiry"
    try:
        days = int(expires_in_days)
    except (TypeError, ValueError):
        raise ValidationError(
            {"expires_in_days": f"The expiry is a whole number of days: {bounds}."}
        ) from None
    if isinstance(expires_in_days, (bool, float)) or not MIN_EXPIRY_DAYS <= days <= MAX_EXPIRY_DAYS:
        raise ValidationError({"expires_in_days": f"The expiry must be {bounds}."})
    return days


@transaction.atomic
def api_token_create(*, user: Any, name: str, expires_in_days: int | None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns it with its secret, which is never stored: show it once."""
    if not getattr(user, "is_active", False):
        raise PermissionDenied("A deactivated account cannot make API tokens.")
    clean_name = _clean_name(name)
    days = _clean_expiry_days(expires_in_days)
    # Lock the user's row so two concurrent requests cannot both pass the limit (PostgreSQL;
    # SQLite serialises writers anyway).
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    now = timezone.now()
    if live_api_tokens_of(user=user, now=now).count() >= MAX_LIVE_TOKENS_PER_USER:
        raise ValidationError(
            f"You have {MAX_LIVE_TOKENS_PER_USER} live API tokens, the most allowed: revoke one you no longer use first."
        )
    secret = SECRET_MARKER + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=clean_name,
        prefix=secret[len(SECRET_MARKER) : len(SECRET_MARKER) + PREFIX_CHARS],
        key_sha256=secret_digest(secret),
        expires_at=now + timedelta(days=days) if days is not None else None,
    )
    audit_log(
        actor=user,
        action="api_token.created",
        target=token,
        data={
            "name": token.name,
            "prefix": token.prefix,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        },
    )
    return token, secret


@transaction.atomic
def api_token_revoke(*, actor: Any, token: ApiToken, via: str = "") -> bool:
    """Revoke `token` for good (its owner, or staff in the admin). True when it was live
    until now; revoking an already revoked token changes and records nothing."""
    if token.user_id != getattr(actor, "pk", None) and not getattr(actor, "is_staff", False):
        raise PermissionDenied("Only the owner of an API token can revoke it.")
    # Re-read under a lock: a concurrent revocation is then seen, and recorded once.
    locked = ApiToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is not None:
        token.revoked_at, token.revoked_by_id = locked.revoked_at, locked.revoked_by_id
        return False
    locked.revoked_at = timezone.now()
    locked.revoked_by = actor
    locked.save(update_fields=["revoked_at", "revoked_by"])
    token.revoked_at, token.revoked_by_id = locked.revoked_at, locked.revoked_by_id
    data = {"name": locked.name, "prefix": locked.prefix, "username": locked.user.get_username()}
    if via:
        data["via"] = via
    audit_log(actor=actor, action="api_token.revoked", target=locked, data=data)
    return True


# --------------------------------------------------------------------------- authentication
def api_token_verify(secret: str) -> ApiToken:
    """The live token whose secret this is, with its user; raises ApiTokenRefused (with the
    sentence to show) for a malformed, unknown, revoked or expired token or an inactive user.
    Marks it used (at most once a minute)."""
    if len(secret) > MAX_SECRET_CHARS or not _SECRET_PATTERN.fullmatch(secret):
        raise ApiTokenRefused(INVALID_MESSAGE)
    try:
        token = ApiToken.objects.select_related("user").get(key_sha256=secret_digest(secret))
    except ApiToken.DoesNotExist:
        raise ApiTokenRefused(INVALID_MESSAGE) from None
    now = timezone.now()
    if token.revoked_at is not None:
        raise ApiTokenRefused(REVOKED_MESSAGE)
    if token.expires_at is not None and token.expires_at <= now:
        raise ApiTokenRefused(EXPIRED_MESSAGE)
    if not token.user.is_active:
        raise ApiTokenRefused(INACTIVE_MESSAGE)
    _mark_used(token=token, now=now)
    return token


def _mark_used(*, token: ApiToken, now: Any) -> None:
    """One conditional UPDATE, and only when the stored time is a minute old: a busy script
    does not cost a write per request, and concurrent requests write at most once."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    token.last_used_at = now


def api_token_authenticate(secret: str) -> Any | None:
    """The active user this secret authenticates, or None."""
    try:
        return api_token_verify(secret).user
    except ApiTokenRefused:
        return None
