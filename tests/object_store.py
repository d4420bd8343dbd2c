"""A real S3-compatible server for tests: moto's standalone server, on a loopback port.

`object_store` (session) starts it once; `media_bucket` (per test) creates an empty bucket
and points the settings at it (MEDIA_BUCKET and the django-storages alias), so the code under
test talks S3 over HTTP exactly as it would to MinIO or AWS. Worker clusters started by a test
reach the same server through `bucket_environment(...)`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@dataclass(frozen=True)
class ObjectStore:
    endpoint_url: str

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - requirements-dev.txt pins moto[server]
        pytest.fail("moto[server] is not installed: make install-dev")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield ObjectStore(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()


def bucket_environment(*, store: ObjectStore, bucket: str, delivery: str = "presigned") -> dict[str, str]:
    """The environment variables that point a settings module (a worker cluster's) at `bucket`."""
    return {
        "MEDIA_BUCKET": bucket,
        "MEDIA_S3_ENDPOINT_URL": store.endpoint_url,
        "MEDIA_S3_REGION": REGION,
        "MEDIA_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "MEDIA_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "MEDIA_DELIVERY": delivery,
    }


def bucket_settings(*, store: ObjectStore, bucket: str) -> dict[str, Any]:
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": store.endpoint_url,
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "location": "",
            "default_acl": None,
            "querystring_auth": True,
            "addressing_style": "path",
            "signature_version": "s3v4",
            "file_overwrite": True,
        },
    }


@pytest.fixture
def media_bucket(object_store: ObjectStore, settings: Any, tmp_path: Any) -> Iterator[str]:
    """An empty bucket that is the media store for this test; MEDIA_ROOT becomes an empty
    local cache, so anything read from it must have come from the bucket."""
    from analyses import storage

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    object_store.client().create_bucket(Bucket=bucket)
    settings.MEDIA_BUCKET = bucket
    settings.MEDIA_S3_ENDPOINT_URL = object_store.endpoint_url
    settings.MEDIA_DELIVERY = "presigned"
    settings.MEDIA_ROOT = str(tmp_path / "cache")
    settings.STORAGES = {
        **settings.STORAGES,
        storage.BUCKET_STORAGE_ALIAS: bucket_settings(store=object_store, bucket=bucket),
    }
    storage._bucket.cache_clear()
    try:
        yield bucket
    finally:
        storage._bucket.cache_clear()
