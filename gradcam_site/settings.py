"""Settings for 3D Grad-CAM Studio.

Everything that differs between machines comes from environment variables, read through
`gradcam_site.env`, which raises ImproperlyConfigured on a value it cannot parse instead of
silently falling back. Defaults give a working single-machine set-up: SQLite, the django-q2
ORM broker and media on the local disk.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gradcam_site.env import (
    ensure_dir,
    env_bool,
    env_dir,
    env_float,
    env_header,
    env_header_value,
    env_int,
    env_list,
    env_str,
    media_redirect_origins,
)

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
    "axes",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "audit",
    "analyses",
]

MIDDLEWARE = [
    # First: refuses oversized request bodies before anything (CSRF included) parses them.
    "gradcam_site.middleware.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gradcam_site.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a log-in unless its view is marked `login_not_required`.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out log-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
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
                "analyses.sharing.context_processors.shared_with_me",
            ],
        },
    },
]

VAR_DIR = env_dir("GRADCAM_VAR_DIR", BASE_DIR / "var")
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except Exception as exc:  # dj_database_url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} is not a database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite cannot create the folder of its file ("unable to open database file").
    _sqlite_name = str(DATABASES["default"]["NAME"])
    if _sqlite_name and _sqlite_name != ":memory:" and not _sqlite_name.startswith("file:"):
        ensure_dir("DATABASE_URL", Path(_sqlite_name).parent)
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
            "GRADCAM_TEST_DATABASE",
            os.path.join(tempfile.gettempdir(), f"gradcam-test-{os.getpid()}.sqlite3"),
        ),
    }

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # First: refuses every log-in (right password or not) of a locked-out account or address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
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
MEDIA_ROOT = env_dir("MEDIA_ROOT", BASE_DIR / "media")
MEDIA_URL = None

# The media store (analyses/storage.py). Unset MEDIA_BUCKET: MEDIA_ROOT is the store (one
# machine). Set: an S3-compatible bucket is the store and MEDIA_ROOT only this machine's cache
# and scratch space, so web servers and workers on other machines share nothing but the
# database, the broker and the bucket.
MEDIA_BUCKET = env_str("MEDIA_BUCKET", "").strip()
MEDIA_S3_ENDPOINT_URL = env_str("MEDIA_S3_ENDPOINT_URL", "").strip()  # empty: AWS itself
MEDIA_S3_REGION = env_str("MEDIA_S3_REGION", "us-east-1").strip()
# Empty: boto3's own chain (instance role, ~/.aws, AWS_* variables).
MEDIA_S3_ACCESS_KEY_ID = env_str("MEDIA_S3_ACCESS_KEY_ID", "")
MEDIA_S3_SECRET_ACCESS_KEY = env_str("MEDIA_S3_SECRET_ACCESS_KEY", "")
MEDIA_S3_PREFIX = env_str("MEDIA_S3_PREFIX", "").strip().strip("/")
# How long a presigned address handed to a browser (or to nginx) stays valid.
MEDIA_PRESIGN_SECONDS = env_int("MEDIA_PRESIGN_SECONDS", 60, minimum=5)
if MEDIA_PRESIGN_SECONDS > 3600:
    raise ImproperlyConfigured(f"MEDIA_PRESIGN_SECONDS={MEDIA_PRESIGN_SECONDS} is above 3600 (one hour)")
# Largest this machine's cache of stored files may grow (object store only; workers trim it).
MEDIA_CACHE_MB = env_int("MEDIA_CACHE_MB", 10 * 1024, minimum=100)
# Who sends a private file's bytes once Django has checked the permission:
#   django    - Django streams it (one machine, no proxy; the default without a bucket);
#   accel     - nginx, told by X-Accel-Redirect (docker/nginx.conf's internal locations);
#   presigned - the object store, by a redirect to a short-lived presigned URL (the default
#               with a bucket; the store's endpoint must be reachable by browsers).
MEDIA_DELIVERY = env_str("MEDIA_DELIVERY", "presigned" if MEDIA_BUCKET else "django").strip().lower()
if MEDIA_DELIVERY not in ("django", "accel", "presigned"):
    raise ImproperlyConfigured(f"MEDIA_DELIVERY={MEDIA_DELIVERY!r} is not one of: django, accel, presigned")
if MEDIA_DELIVERY == "presigned" and not MEDIA_BUCKET:
    raise ImproperlyConfigured("MEDIA_DELIVERY=presigned needs an object store: set MEDIA_BUCKET")
if MEDIA_BUCKET and MEDIA_DELIVERY == "django" and not DEBUG:
    raise ImproperlyConfigured(
        "MEDIA_DELIVERY=django with MEDIA_BUCKET would make every web server download each file it "
        "serves: use presigned or accel (allowed only with DEBUG=1)"
    )
# nginx's internal location prefix for X-Accel-Redirect (see docker/nginx.conf).
MEDIA_ACCEL_PREFIX = env_str("MEDIA_ACCEL_PREFIX", "/_protected/").strip()
if not (MEDIA_ACCEL_PREFIX.startswith("/") and MEDIA_ACCEL_PREFIX.endswith("/")):
    raise ImproperlyConfigured(f"MEDIA_ACCEL_PREFIX={MEDIA_ACCEL_PREFIX!r} must start and end with '/'")

STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if MEDIA_BUCKET:
    STORAGES["media_bucket"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": MEDIA_BUCKET,
            "endpoint_url": MEDIA_S3_ENDPOINT_URL or None,
            "region_name": MEDIA_S3_REGION,
            "access_key": MEDIA_S3_ACCESS_KEY_ID or None,
            "secret_key": MEDIA_S3_SECRET_ACCESS_KEY or None,
            "location": MEDIA_S3_PREFIX,
            # Private objects, addressed by path (what S3-compatible servers expect), signed
            # with SigV4; never overwritten under a new name (our names are unique already).
            "default_acl": None,
            "querystring_auth": True,
            "addressing_style": "path",
            "signature_version": "s3v4",
            "file_overwrite": True,
            "object_parameters": {"CacheControl": "private, max-age=0"},
        },
    }

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
# Per-user quotas (defaults; staff can set other limits per user in the admin).
GRADCAM_QUOTA_STORAGE_MB = env_int("GRADCAM_QUOTA_STORAGE_MB", 20 * 1024, minimum=1)
GRADCAM_QUOTA_ACTIVE_ANALYSES = env_int("GRADCAM_QUOTA_ACTIVE_ANALYSES", 10, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Every URL but the upload views (`@large_upload_view`, with their own limits above) refuses
# a larger body before reading it, and drops any file part it is sent.
GRADCAM_MAX_REQUEST_BODY_BYTES = env_int("GRADCAM_MAX_REQUEST_MB", 4, minimum=1) * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "gradcam_site.middleware.UploadViewsOnlyFileHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# The REST API (/api/v1/): the pages' permissions through the same selectors and services.
# Scripts authenticate with personal API tokens; the browser with its session (and CSRF).
GRADCAM_API_UPLOADS_PER_HOUR = env_int("GRADCAM_API_UPLOADS_PER_HOUR", 120, minimum=1)
GRADCAM_API_ANALYSES_PER_HOUR = env_int("GRADCAM_API_ANALYSES_PER_HOUR", 600, minimum=1)
REST_FRAMEWORK = {
    # Tokens first: DRF's WWW-Authenticate header (so a 401, not a 403, for anonymous requests)
    # comes from the first class, and a bad token is refused even beside a session cookie.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "gradcam_site.api.ApiPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "gradcam_site.api.api_exception_handler",
    "DEFAULT_METADATA_CLASS": "gradcam_site.api.ApiMetadata",
    "DEFAULT_THROTTLE_RATES": {
        "uploads": f"{GRADCAM_API_UPLOADS_PER_HOUR}/hour",
        "analyses": f"{GRADCAM_API_ANALYSES_PER_HOUR}/hour",
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "3D Grad-CAM Studio API",
    "DESCRIPTION": (
        "Upload Keras Conv3D video classifiers and videos, run Grad-CAM analyses, read their "
        "results, share and compare them. Authenticate with a personal API token "
        "(`Authorization: Bearer gcs_...`, made on the account page) or a browser session. "
        'Errors always have the shape `{"error": {"status", "code", "message", "fields"?}}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Offline docs: Swagger UI and Redoc from drf-spectacular-sidecar's static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several resources have a `status` with their own values: name each set.
    "ENUM_NAME_OVERRIDES": {
        "UploadStatusEnum": ["processing", "ready", "failed"],
        "AnalysisStatusEnum": "analyses.runs.models.AnalysisStatus",
        "VerificationStatusEnum": "analyses.runs.models.VerificationStatus",
        "TeamRoleEnum": "accounts.models.TeamRole",
        "ShareRoleEnum": "analyses.sharing.models.ShareRole",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "gradcam_site.api.schema_declare_page_errors",
    ],
}

# django-q2. Its defaults are dangerous for long jobs: a task that outlives `timeout` is
# killed, and one not acknowledged within `retry` seconds is handed out again — forever unless
# `max_attempts` is set. Our task is an orchestrator whose own state machine on the Analysis
# row decides about retries, so django-q2 gets exactly one attempt, and `retry` is longer than
# `timeout` so a running task is never handed to a second worker.
_Q_TIMEOUT = GRADCAM_ANALYSIS_TIMEOUT + 120
_Q_WORKERS = env_int("GRADCAM_WORKERS", 2, minimum=1)
Q_CLUSTER = {
    "name": "gradcam",
    "workers": _Q_WORKERS,
    "recycle": 50,
    "timeout": _Q_TIMEOUT,
    "retry": _Q_TIMEOUT + 300,
    "max_attempts": 1,
    # A failed task is acknowledged (removed from the queue): failure is recorded on the
    # Analysis row, and re-delivering it would only repeat the failure.
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    # Tasks a cluster takes from the broker ahead of its free workers. With Redis a taken task
    # is out of the shared list: a cluster holding many while others idle would spread work
    # unevenly over machines, so it takes no more than it has workers.
    "queue_limit": _Q_WORKERS,
    "poll": 0.5,
    "orm": "default",
}
REDIS_URL = env_str("REDIS_URL", "").strip()
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} is not a redis://, rediss:// or unix:// URL")
    # The Redis broker keeps no copy of a task once a cluster's pusher has taken it (BLPOP into
    # the cluster's local queue of `queue_limit`), and a Redis without persistence loses its list
    # on a restart: the reaper re-enqueues queued rows whose task is in neither place after
    # GRADCAM_HEARTBEAT_STALE_SECONDS (analyses.worker.queue). A running cluster survives a Redis
    # restart by itself: its pusher exits on the broken connection (after 10 s) and the
    # cluster's sentinel starts a new one (tests/worker/test_redis_broker.py).
    Q_CLUSTER.pop("orm")
    Q_CLUSTER["redis"] = REDIS_URL
    # Throttles (API, sign-up, member additions) count in the cache: shared by every web
    # process and machine only when the cache is.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gradcam",
        }
    }
if env_bool("GRADCAM_Q_SYNC", False):
    Q_CLUSTER["sync"] = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "WARNING"}},
}

# --------------------------------------------------------------------------- security
# Safe by default when DEBUG is off: HTTPS only (cookies, redirect, HSTS). Each default can be
# overridden from the environment; the test run does so explicitly (tests/pytest_dev_secret.py)
# because its live server speaks plain HTTP.
_PRODUCTION = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# ("HTTP_X_FORWARDED_PROTO", "https") from "X-Forwarded-Proto: https". Only behind a proxy that
# always sets (or strips) that header: otherwise any client could claim to be on HTTPS.
SECURE_PROXY_SSL_HEADER = env_header_value("SECURE_PROXY_SSL_HEADER")
SECURE_REFERRER_POLICY = env_str("SECURE_REFERRER_POLICY", "same-origin")
SECURE_CROSS_ORIGIN_OPENER_POLICY = env_str("SECURE_CROSS_ORIGIN_OPENER_POLICY", "same-origin")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Pages load only our own scripts, styles, images and media (static/ and permission-checked
# views); no inline script or style, no plugin, no framing, forms post only to this site.
# With presigned delivery, images and videos are redirected to the object store's origin, and a
# browser applies the policy to the redirect's target too: that origin (and only it) is added.
MEDIA_REDIRECT_ORIGINS = media_redirect_origins(
    delivery=MEDIA_DELIVERY, endpoint_url=MEDIA_S3_ENDPOINT_URL, region=MEDIA_S3_REGION
)
_MEDIA_SOURCES = "".join(f" {origin}" for origin in MEDIA_REDIRECT_ORIGINS)
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{_MEDIA_SOURCES}; "
    f"media-src 'self' blob:{_MEDIA_SOURCES}; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)
# The client's address, for log-in throttling: REMOTE_ADDR unless the site is behind proxies
# that set this header (e.g. X-Forwarded-For); then the address the outermost of
# GRADCAM_TRUSTED_PROXY_COUNT proxies appended. Never set it without such a proxy: clients
# could then pick their own address.
GRADCAM_CLIENT_IP_HEADER = env_header("GRADCAM_CLIENT_IP_HEADER")
GRADCAM_TRUSTED_PROXY_COUNT = env_int("GRADCAM_TRUSTED_PROXY_COUNT", 1, minimum=1)

# Log-in throttling (django-axes): after GRADCAM_LOGIN_FAILURE_LIMIT failures for one username,
# or from one address, every log-in for it (right password or not) is refused until no
# failure is newer than the cool-off. Unknown usernames are counted and answered exactly
# like real ones.
AXES_FAILURE_LIMIT = env_int("GRADCAM_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env_int("GRADCAM_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "accounts.views.login_locked_out"
AXES_CLIENT_IP_CALLABLE = "gradcam_site.middleware.client_ip"
# A success must not reset the address's count: an attacker would log in to their own
# account between guesses.
AXES_RESET_ON_SUCCESS = False
# Pages that tell whether a username exists are throttled too (counted per web process, in
# the default cache): sign-up attempts per address, member additions per team owner.
GRADCAM_SIGNUP_LIMIT_PER_HOUR = env_int("GRADCAM_SIGNUP_LIMIT_PER_HOUR", 10, minimum=1)
GRADCAM_MEMBER_ADD_LIMIT_PER_HOUR = env_int("GRADCAM_MEMBER_ADD_LIMIT_PER_HOUR", 30, minimum=1)

# --------------------------------------------------------------------------- engine sandbox and limits
# Every child process that parses an uploaded file runs in a bubblewrap sandbox (analyses/worker/sandbox.py):
# no network, its own /proc and /tmp, read access to its own inputs only, write access to its own
# output folder only, and (when the platform runs as root) as GRADCAM_SANDBOX_USER.
GRADCAM_SANDBOX = env_str("GRADCAM_SANDBOX", "bwrap").strip().lower()
if GRADCAM_SANDBOX not in ("bwrap", "off"):
    raise ImproperlyConfigured(f"GRADCAM_SANDBOX={GRADCAM_SANDBOX!r} is not one of: bwrap, off")
if GRADCAM_SANDBOX == "off" and not DEBUG:
    raise ImproperlyConfigured(
        "GRADCAM_SANDBOX=off parses uploaded models and videos without any isolation and is allowed only "
        "for development, with DEBUG=1; in production install bubblewrap (apt-get install bubblewrap) "
        "and leave GRADCAM_SANDBOX unset (bwrap)"
    )


def _sandbox_user_ids(value: str) -> tuple[int, int]:
    """`nobody`, `65534` or `65534:65534` -> (uid, gid) of an existing, unprivileged user."""
    import pwd

    name, _, group = value.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid = entry.pw_uid, entry.pw_gid
    except KeyError:
        if not name.isdigit():
            raise ImproperlyConfigured(f"GRADCAM_SANDBOX_USER={value!r}: there is no such user") from None
        uid, gid = int(name), int(name)
    if group:
        if not group.isdigit():
            raise ImproperlyConfigured(f"GRADCAM_SANDBOX_USER={value!r}: the group must be a number")
        gid = int(group)
    if uid == 0 or gid == 0:
        raise ImproperlyConfigured(
            f"GRADCAM_SANDBOX_USER={value!r} is root: engine children need an unprivileged user"
        )
    return uid, gid


GRADCAM_SANDBOX_USER = env_str("GRADCAM_SANDBOX_USER", "nobody").strip()
GRADCAM_SANDBOX_UID, GRADCAM_SANDBOX_GID = _sandbox_user_ids(GRADCAM_SANDBOX_USER)
# Per-process limits of the children that do not import TensorFlow (inspect, probe, transcode,
# preview; FFmpeg grandchildren get their own copy). A 4K H.264/HEVC transcode needs under 300 MB.
GRADCAM_CHILD_MEMORY_MB = env_int("GRADCAM_CHILD_MEMORY_MB", 2048, minimum=256)
# CPU seconds per process: twice the longest wall-clock limit (FFmpeg runs two threads per stage),
# so it only fires on a child that escaped its wall clock.
GRADCAM_CHILD_CPU_SECONDS = env_int(
    "GRADCAM_CHILD_CPU_SECONDS",
    int(2 * max(GRADCAM_INSPECT_TIMEOUT, GRADCAM_PROBE_TIMEOUT, GRADCAM_TRANSCODE_TIMEOUT)),
    minimum=1,
)
# Largest file any engine child may write (renditions, heatmap videos, raw maps).
GRADCAM_CHILD_FILE_MB = env_int("GRADCAM_CHILD_FILE_MB", 2048, minimum=1)
# The analysis engine's memory is GRADCAM_ANALYSIS_MEMORY_MB of resident memory (RLIMIT_AS breaks
# TensorFlow); its CPU time may use every core for the whole wall-clock limit.
GRADCAM_ANALYSIS_CPU_SECONDS = env_int(
    "GRADCAM_ANALYSIS_CPU_SECONDS", GRADCAM_ANALYSIS_TIMEOUT * (os.cpu_count() or 1), minimum=10
)
# How many short-lived engine children may run at once on this machine (a file-lock semaphore in
# VAR_DIR), and how long one waits for a free slot before failing with "the server is busy".
GRADCAM_CHILD_SLOTS = env_int("GRADCAM_CHILD_SLOTS", max(1, os.cpu_count() or 1), minimum=1)
GRADCAM_CHILD_SLOT_WAIT = env_float("GRADCAM_CHILD_SLOT_WAIT", 120.0, minimum=0)
