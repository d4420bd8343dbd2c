"""The media store's, the broker's and file delivery's settings: read from the environment,
refused loudly when they cannot work together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.pytest_dev_secret import TEST_ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
PRINTED = (
    "MEDIA_DELIVERY",
    "MEDIA_BUCKET",
    "CONTENT_SECURITY_POLICY",
    "Q_CLUSTER",
    "CACHES",
    "STORAGES",
)
BUCKET = {"MEDIA_BUCKET": "gradcam-media", "MEDIA_S3_ENDPOINT_URL": "http://store.internal:9000"}


def _settings(**env: str) -> tuple[int, dict[str, Any] | str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG", *TEST_ENVIRONMENT}}
    clean = {k: v for k, v in clean.items() if not k.startswith(("MEDIA_", "REDIS_"))}
    clean.update({"SECRET_KEY": "x" * 50, "DJANGO_SETTINGS_MODULE": "gradcam_site.settings", **env})
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {PRINTED!r}}}, default=str))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        return result.returncode, result.stderr
    return 0, json.loads(result.stdout.strip().splitlines()[-1])


def test_without_a_bucket_media_stays_on_the_local_disk_and_django_sends_it():
    code, values = _settings()
    assert code == 0, values
    assert isinstance(values, dict)
    assert values["MEDIA_DELIVERY"] == "django"
    assert "media_bucket" not in values["STORAGES"]
    assert "img-src 'self' data: blob:;" in values["CONTENT_SECURITY_POLICY"]


def test_a_bucket_turns_on_the_object_store_with_presigned_delivery_and_allows_only_its_origin():
    code, values = _settings(**BUCKET)
    assert code == 0, values
    assert isinstance(values, dict)
    assert values["MEDIA_DELIVERY"] == "presigned"
    options = values["STORAGES"]["media_bucket"]["OPTIONS"]
    assert options["bucket_name"] == "gradcam-media"
    assert options["endpoint_url"] == "http://store.internal:9000"
    policy = values["CONTENT_SECURITY_POLICY"]
    assert "img-src 'self' data: blob: http://store.internal:9000;" in policy
    assert "media-src 'self' blob: http://store.internal:9000;" in policy
    assert "script-src 'self';" in policy and "connect-src 'self';" in policy


def test_accel_delivery_adds_no_origin_to_the_policy():
    code, values = _settings(**BUCKET, MEDIA_DELIVERY="accel")
    assert code == 0, values
    assert isinstance(values, dict)
    assert "store.internal" not in values["CONTENT_SECURITY_POLICY"]


def test_presigned_delivery_without_a_bucket_is_refused():
    code, message = _settings(MEDIA_DELIVERY="presigned")
    assert code != 0
    assert "MEDIA_DELIVERY=presigned needs an object store: set MEDIA_BUCKET" in str(message)


def test_django_delivery_from_a_bucket_is_refused_in_production():
    code, message = _settings(**BUCKET, MEDIA_DELIVERY="django")
    assert code != 0
    assert "would make every web server download each file it serves" in str(message)
    allowed, _ = _settings(**BUCKET, MEDIA_DELIVERY="django", DEBUG="1")
    assert allowed == 0


def test_bad_delivery_presign_lifetime_endpoint_and_accel_prefix_are_refused():
    cases = [
        ({"MEDIA_DELIVERY": "nginx"}, "MEDIA_DELIVERY='nginx' is not one of: django, accel, presigned"),
        ({**BUCKET, "MEDIA_PRESIGN_SECONDS": "86400"}, "MEDIA_PRESIGN_SECONDS=86400 is above 3600"),
        ({**BUCKET, "MEDIA_PRESIGN_SECONDS": "1"}, "below the minimum"),
        ({**BUCKET, "MEDIA_S3_ENDPOINT_URL": "store:9000"}, "is not an http(s)://host[:port] address"),
        ({"MEDIA_ACCEL_PREFIX": "_protected"}, "must start and end with '/'"),
        ({"REDIS_URL": "localhost:6379"}, "is not a redis://, rediss:// or unix:// URL"),
    ]
    for env, expected in cases:
        code, message = _settings(**env)
        assert code != 0, env
        assert expected in str(message), (env, message)


def test_redis_url_moves_the_queue_and_the_throttle_cache_to_redis():
    code, values = _settings(REDIS_URL="redis://queue.internal:6379/0")
    assert code == 0, values
    assert isinstance(values, dict)
    assert values["Q_CLUSTER"]["redis"] == "redis://queue.internal:6379/0"
    assert "orm" not in values["Q_CLUSTER"]
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert values["CACHES"]["default"]["LOCATION"] == "redis://queue.internal:6379/0"
