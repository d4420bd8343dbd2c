"""docker/nginx.conf run for real on loopback (Debian's nginx), in front of a stand-in for Django
that answers with the platform's own X-Accel-Redirect response (analyses.storage, MEDIA_DELIVERY
=accel, a bucket on moto's S3 server): a Range request through nginx gets 206 and the right bytes
from the bucket, and nothing under /_protected/ is reachable from outside.

Only what cannot run outside Docker is changed in the config: the upstream names (web:8000,
minio:9000) become loopback addresses, the listen ports become free loopback ports, and the
certificate and static paths move into a temporary folder.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import urllib3

from tests.deploy.tools import NGINX_CONF_PATH, free_port, require_tool, wait_for_port
from tests.object_store import ObjectStore, media_bucket, object_store  # noqa: F401 - fixtures

VIDEO_NAME = "analyses/0f3a/attempt-1/layers/00/heatmap.mp4"
VIDEO_BYTES = bytes((i * 7 + i // 251) % 256 for i in range(300_000))


@dataclass(frozen=True)
class Certificate:
    chain: Path
    key: Path


def self_signed_certificate(folder: Path) -> Certificate:
    """A throwaway certificate for 127.0.0.1/localhost (cryptography, from requirements-dev)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    tls = folder / "tls"
    tls.mkdir(exist_ok=True)
    chain, key_file = tls / "fullchain.pem", tls / "privkey.pem"
    chain.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Certificate(chain=chain, key=key_file)


def nginx_test_config(
    folder: Path,
    *,
    certificate: Certificate,
    replacements: dict[str, str],
    http_port: int | None = None,
    https_port: int | None = None,
) -> Path:
    """docker/nginx.conf with only the machine-specific strings replaced; fails if one of them
    is no longer in the file (the test would silently test something else)."""
    text = NGINX_CONF_PATH.read_text(encoding="utf-8")
    static = folder / "static"
    static.mkdir(exist_ok=True)
    swaps = {
        "/etc/nginx/tls/fullchain.pem": str(certificate.chain),
        "/etc/nginx/tls/privkey.pem": str(certificate.key),
        "alias /srv/static/;": f"alias {static}/;",
        "access_log /dev/stdout;": f"access_log {folder}/access.log;",
        "error_log /dev/stderr warn;": f"error_log {folder}/error.log warn;",
        **replacements,
    }
    if http_port is not None:
        swaps["listen 80 default_server;"] = f"listen 127.0.0.1:{http_port} default_server;"
    if https_port is not None:
        swaps["listen 443 ssl default_server;"] = f"listen 127.0.0.1:{https_port} ssl default_server;"
    for old, new in swaps.items():
        assert old in text, f"docker/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    config = folder / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    return config


@dataclass
class StandInDjango:
    """Answers /files/video with analyses.storage's delivery response; anything else with a page
    naming the path. Records what it was asked, to prove nginx never forwarded /_protected/."""

    port: int
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def stand_in_django() -> Iterator[StandInDjango]:
    from analyses.storage import media_delivery_response

    state = StandInDjango(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state.seen.append((self.path, dict(self.headers.items())))
            if self.path in ("/files/video", "/files/download"):
                response = media_delivery_response(
                    name=VIDEO_NAME,
                    content_type="video/mp4",
                    download_name="heatmap layer 00.mp4" if self.path == "/files/download" else None,
                )
                assert response is not None
                self.send_response(response.status_code)
                for header, value in response.items():
                    self.send_header(header, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = f"from-django {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class RunningNginx:
    http: str
    https: str
    static: Path


@pytest.fixture
def nginx_in_front(
    tmp_path: Path,
    stand_in_django: StandInDjango,
    object_store: ObjectStore,  # noqa: F811 - fixture
    media_bucket: str,  # noqa: F811 - fixture
    settings: Any,
) -> Iterator[RunningNginx]:
    nginx = require_tool("nginx", debian_package="nginx")
    settings.MEDIA_DELIVERY = "accel"
    object_store.client().put_object(Bucket=media_bucket, Key=VIDEO_NAME, Body=VIDEO_BYTES)
    http_port, https_port = free_port(), free_port()
    store_host = urlsplit(object_store.endpoint_url).netloc
    config = nginx_test_config(
        tmp_path,
        certificate=self_signed_certificate(tmp_path),
        replacements={'"web:8000"': f'"127.0.0.1:{stand_in_django.port}"', '"minio:9000"': f'"{store_host}"'},
        http_port=http_port,
        https_port=https_port,
    )
    directives = f"daemon off; pid {tmp_path}/nginx.pid;"
    if os.geteuid() == 0:
        # nginx started by root hands requests to `nobody`, which cannot enter pytest's 0700 tmp_path.
        directives += " user root;"
    process = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(config), "-g", directives],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            wait_for_port(https_port)
        except AssertionError:
            process.kill()
            raise AssertionError(
                f"nginx did not start: {process.communicate()[1].decode()[-2000:]}"
            ) from None
        yield RunningNginx(
            http=f"http://127.0.0.1:{http_port}",
            https=f"https://127.0.0.1:{https_port}",
            static=tmp_path / "static",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get(url: str, **kwargs: Any) -> requests.Response:
    # The certificate is the throwaway self-signed one: nothing to verify.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        return requests.get(url, verify=False, allow_redirects=False, timeout=30, **kwargs)


def test_a_range_request_gets_206_with_the_right_bytes_from_the_bucket_through_nginx(
    nginx_in_front: RunningNginx, stand_in_django: StandInDjango
) -> None:
    response = _get(
        nginx_in_front.https + "/files/video",
        headers={"Range": "bytes=100000-100999", "Authorization": "Bearer gcs_client_token"},
    )
    assert response.status_code == 206, response.text[:500]
    assert response.content == VIDEO_BYTES[100000:101000]
    assert response.headers["Content-Range"] == f"bytes 100000-100999/{len(VIDEO_BYTES)}"
    assert response.headers["Content-Type"] == "video/mp4"
    assert "X-Accel-Redirect" not in response.headers
    # Django was asked for the page (the permission check), never for the bytes.
    assert [path for path, _ in stand_in_django.seen] == ["/files/video"]


def test_a_whole_file_comes_from_the_bucket_through_nginx(nginx_in_front: RunningNginx) -> None:
    response = _get(nginx_in_front.https + "/files/video")
    assert response.status_code == 200
    assert response.content == VIDEO_BYTES


def test_a_download_through_nginx_has_one_content_disposition_and_stays_uncached(
    nginx_in_front: RunningNginx,
) -> None:
    response = _get(nginx_in_front.https + "/files/download", headers={"Range": "bytes=0-99"})
    assert response.status_code == 206 and response.content == VIDEO_BYTES[:100]
    raw = response.raw.headers
    # Two Content-Disposition headers make browsers refuse the download.
    assert raw.getlist("Content-Disposition") == ['attachment; filename="heatmap layer 00.mp4"']
    assert raw.getlist("Cache-Control") == ["private, no-store"]
    assert "Access-Control-Allow-Origin" not in response.headers


def test_the_protected_prefix_is_404_from_outside_and_never_reaches_django(
    nginx_in_front: RunningNginx,
    stand_in_django: StandInDjango,
    media_bucket: str,  # noqa: F811 - fixture
) -> None:
    for path in (
        f"/_protected/s3/{media_bucket}/{VIDEO_NAME}",
        "/_protected/media/" + VIDEO_NAME,
        "/_protected/",
    ):
        response = _get(nginx_in_front.https + path)
        assert response.status_code == 404, path
        assert VIDEO_BYTES[:64] not in response.content
    assert stand_in_django.seen == []


def test_nginx_sets_the_proxy_headers_itself_and_redirects_plain_http(
    nginx_in_front: RunningNginx, stand_in_django: StandInDjango
) -> None:
    response = _get(
        nginx_in_front.https + "/history/?page=2",
        headers={"X-Forwarded-Proto": "http", "X-Forwarded-For": "6.6.6.6", "Host": "studio.example.org"},
    )
    assert response.text == "from-django /history/?page=2"
    _, headers = stand_in_django.seen[-1]
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-For"] == "127.0.0.1"  # the client's claim is replaced, not appended to
    assert headers["Host"] == "studio.example.org"
    plain = _get(nginx_in_front.http + "/history/", headers={"Host": "studio.example.org"})
    assert plain.status_code == 301 and plain.headers["Location"] == "https://studio.example.org/history/"


def test_static_files_are_served_by_nginx_without_django(
    nginx_in_front: RunningNginx, stand_in_django: StandInDjango
) -> None:
    (nginx_in_front.static / "site.css").write_text("body { color: black; }\n", encoding="utf-8")
    deadline = time.monotonic() + 5
    response = _get(nginx_in_front.https + "/static/site.css")
    while response.status_code != 200 and time.monotonic() < deadline:
        response = _get(nginx_in_front.https + "/static/site.css")
    assert response.status_code == 200 and response.text == "body { color: black; }\n"
    assert response.headers["Content-Type"].startswith("text/css")
    assert stand_in_django.seen == []
