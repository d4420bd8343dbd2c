"""Settings for 3D Grad-CAM Studio.

Everything that differs between machines comes from environment variables, read through
`gradcam_site.env`, which raises ImproperlyConfigured on a value it cannot parse instead of
silently falling back. Defaults give a working single-machine set-up: SQLite, the django-q2
ORM broker and media on the local disk.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gradcam_site.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
_INSECURE_DEV_KEY = "dev-only-insecure-key-change-me-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    # Only on an explicit request: DEBUG=1, or GRADCAM_ALLOW_DEV_SECRET=1 (the test run sets it).
    if DEBUG or env_bool("GRADCAM_ALLOW_DEV_SECRET", False):
        SECRET_KEY = _INSECURE_DEV_KEY
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set (set DEBUG=1 for local development, GRADCAM_ALLOW_DEV_SECRET=1 for tests)"
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "accounts",
    "analyses",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a log-in unless its view is marked `login_not_required`.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "gradcam_site.urls"
WSGI_APPLICATION = "gradcam_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR = Path(env_str("GRADCAM_VAR_DIR", str(BASE_DIR / "var")))
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except Exception as exc:  # dj_database_url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker cluster write to the same file: wait for locks instead of
    # failing with "database is locked", and use WAL so readers do not block the writer.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a FILE database (not SQLite's default in-memory one) so that a real worker
    # cluster started as a subprocess can open it (tests/worker). One file per test process:
    # several test runs may share this checkout.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str(
            "GRADCAM_TEST_DATABASE", os.path.join(tempfile.gettempdir(), f"gradcam-test-{os.getpid()}.sqlite3")
        ),
    }

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
WHITENOISE_USE_FINDERS = True

# Media holds uploaded models/videos and results. It is never served by a static URL: every
# file goes through a view that checks the same permission as the page it belongs to.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
MEDIA_URL = None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Upload limits. Requests larger than the biggest allowed upload are refused before they
# reach a view; each kind of file has its own limit checked by the service.
GRADCAM_MAX_MODEL_BYTES = env_int("GRADCAM_MAX_MODEL_MB", 500, minimum=1) * 1024 * 1024
GRADCAM_MAX_VIDEO_BYTES = env_int("GRADCAM_MAX_VIDEO_MB", 200, minimum=1) * 1024 * 1024
GRADCAM_MAX_VIDEO_SECONDS = env_float("GRADCAM_MAX_VIDEO_SECONDS", 600.0, minimum=0.1)
GRADCAM_MAX_VIDEO_PIXELS = env_int("GRADCAM_MAX_VIDEO_PIXELS", 3840 * 2160, minimum=1)
GRADCAM_MAX_VIDEO_FRAMES = env_int("GRADCAM_MAX_VIDEO_FRAMES", 36000, minimum=1)
# Wall-clock limits for the child processes that parse untrusted files.
GRADCAM_INSPECT_TIMEOUT = env_float("GRADCAM_INSPECT_TIMEOUT", 60.0, minimum=1)
GRADCAM_PROBE_TIMEOUT = env_float("GRADCAM_PROBE_TIMEOUT", 60.0, minimum=1)
GRADCAM_TRANSCODE_TIMEOUT = env_float("GRADCAM_TRANSCODE_TIMEOUT", 600.0, minimum=1)
GRADCAM_ANALYSIS_TIMEOUT = env_int("GRADCAM_ANALYSIS_TIMEOUT", 1800, minimum=10)
GRADCAM_ANALYSIS_MEMORY_MB = env_int("GRADCAM_ANALYSIS_MEMORY_MB", 8192, minimum=256)
GRADCAM_ANALYSIS_MAX_ATTEMPTS = env_int("GRADCAM_ANALYSIS_MAX_ATTEMPTS", 2, minimum=1)
GRADCAM_HEARTBEAT_STALE_SECONDS = env_int("GRADCAM_HEARTBEAT_STALE_SECONDS", 120, minimum=10)
GRADCAM_ENGINE_PYTHON = env_str("GRADCAM_ENGINE_PYTHON", sys.executable)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# django-q2. Its defaults are dangerous for long jobs: a task that outlives `timeout` is
# killed, and one not acknowledged within `retry` seconds is handed out again — forever unless
# `max_attempts` is set. Our task is an orchestrator whose own state machine on the Analysis
# row decides about retries, so django-q2 gets exactly one attempt, and `retry` is longer than
# `timeout` so a running task is never handed to a second worker.
_Q_TIMEOUT = GRADCAM_ANALYSIS_TIMEOUT + 120
Q_CLUSTER = {
    "name": "gradcam",
    "workers": env_int("GRADCAM_WORKERS", 2, minimum=1),
    "recycle": 50,
    "timeout": _Q_TIMEOUT,
    "retry": _Q_TIMEOUT + 300,
    "max_attempts": 1,
    # A failed task is acknowledged (removed from the queue): failure is recorded on the
    # Analysis row, and re-delivering it would only repeat the failure.
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "queue_limit": 4,
    "poll": 0.5,
    "orm": "default",
}
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL
if env_bool("GRADCAM_Q_SYNC", False):
    Q_CLUSTER["sync"] = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "WARNING"}},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
X_FRAME_OPTIONS = "SAMEORIGIN"
SECURE_CONTENT_TYPE_NOSNIFF = True
