"""Read settings from the environment and fail loudly on bad values (after healthchecks' envbool)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean (use one of: 1/0, true/false, yes/no, on/off)"
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        # float() accepts "inf" and "nan": GRADCAM_TRANSCODE_TIMEOUT=inf would mean no timeout.
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def ensure_dir(name: str, path: Path) -> Path:
    """Create the folder a setting points at (a fresh clone has none), or say why it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name}: cannot create the folder {str(path)!r} ({exc.strerror or exc})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(f"{name}: the folder {str(path)!r} is not writable by this user")
    return path


def env_dir(name: str, default: Path) -> Path:
    """A folder the platform writes to, from the environment, created if it does not exist."""
    raw = os.environ.get(name)
    path = Path(raw.strip()) if raw is not None and raw.strip() else default
    return ensure_dir(name, path.expanduser().resolve())


_HEADER_NAME = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


def _header_meta_key(name: str, raw: str, header: str) -> str:
    header = header.strip()
    if not _HEADER_NAME.fullmatch(header):
        raise ImproperlyConfigured(
            f"{name}={raw!r}: {header!r} is not an HTTP header name (e.g. X-Forwarded-For)"
        )
    return "HTTP_" + header.upper().replace("-", "_")


def env_header(name: str) -> str | None:
    """An HTTP header name from the environment ("X-Forwarded-For") as its request.META key
    ("HTTP_X_FORWARDED_FOR"); None when unset or empty."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return None
    return _header_meta_key(name, raw, raw)


def env_header_value(name: str) -> tuple[str, str] | None:
    """ "Header-Name: value" from the environment as (request.META key, value), the form of
    SECURE_PROXY_SSL_HEADER; None when unset or empty."""
    raw = os.environ.get(name, "")
    if not raw.strip():
        return None
    header, colon, value = raw.partition(":")
    if not colon or not value.strip():
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not of the form 'Header-Name: value' (e.g. 'X-Forwarded-Proto: https')"
        )
    return _header_meta_key(name, raw, header), value.strip()


def media_redirect_origins(*, delivery: str, endpoint_url: str, region: str) -> list[str]:
    """The origins browsers are redirected to for private files (presigned delivery), for the
    Content-Security-Policy: the S3-compatible endpoint's, or AWS's regional S3 endpoints."""
    if delivery != "presigned":
        return []
    if not endpoint_url:
        return [f"https://s3.{region}.amazonaws.com", "https://s3.amazonaws.com"]
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ImproperlyConfigured(
            f"MEDIA_S3_ENDPOINT_URL={endpoint_url!r} is not an http(s)://host[:port] address"
        )
    return [f"{parts.scheme}://{parts.netloc}"]
