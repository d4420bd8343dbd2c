"""docker/compose.yaml checked against the settings module (Docker cannot run here: these
checks, the settings loaded with the compose environment, and nginx run on loopback in
test_nginx_accel.py are what stand in for `docker compose up`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.compose_model import (
    DOCKER_DIR,
    NGINX_CONF,
    REPO,
    app_services,
    dockerfile_facts,
    env_example,
    interpolate,
    load_compose,
    references,
    service_environment,
    settings_variables,
)
from tests.deploy.tools import require_tool

# What this set-up needs from every app container: without each, settings fall back to a
# single-machine default that breaks here (SQLite on a container's own disk, the ORM broker,
# media on an unshared disk, only localhost allowed, an HTTPS redirect loop behind nginx).
REQUIRED_IN_PRODUCTION = {
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "MEDIA_BUCKET",
    "MEDIA_S3_ENDPOINT_URL",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_PROXY_SSL_HEADER",
}
SHARED_BY_WEB_AND_WORKERS = {
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "MEDIA_BUCKET",
    "MEDIA_S3_ENDPOINT_URL",
    "MEDIA_S3_REGION",
    "MEDIA_S3_ACCESS_KEY_ID",
    "MEDIA_S3_SECRET_ACCESS_KEY",
    "MEDIA_S3_PREFIX",
}
# Set in the Dockerfile for programs other than our settings, each for a reason.
DOCKERFILE_ENV_FOR_OTHERS = {
    "PATH",  # the virtualenv first
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",  # logs reach `docker logs` at once
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "DJANGO_SETTINGS_MODULE",  # read by Django, not by the settings module
    "GUNICORN_CMD_ARGS",  # read by gunicorn
}


def _compose() -> dict[str, Any]:
    return load_compose()


def _filled_variables() -> dict[str, str]:
    """docker/.env as an operator would write it: the template's values, a stand-in for each
    value left to fill in."""
    required, optional = env_example()
    filled = {name: value or f"filled-{name.lower().replace('_', '-')}" for name, value in required.items()}
    filled["SITE_HOST"] = "studio.example.org"
    return {**optional, **filled}


def _interpolated(service: dict[str, Any]) -> dict[str, str]:
    variables = _filled_variables()
    return {name: interpolate(value, variables) for name, value in service_environment(service).items()}


def test_every_variable_set_for_an_app_service_is_one_the_settings_read() -> None:
    read = settings_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "MEDIA_BUCKET"} <= read  # the parser works
    services = app_services(_compose())
    assert {"web", "worker", "gpu-worker", "migrate"} <= set(services)
    for name, service in services.items():
        unread = set(service_environment(service)) - read
        assert not unread, f"{name} sets {sorted(unread)}, which no setting reads"


def test_every_variable_the_dockerfile_sets_is_read_by_the_settings_or_another_program() -> None:
    unread = set(dockerfile_facts().env) - settings_variables() - DOCKERFILE_ENV_FOR_OTHERS
    assert not unread, f"docker/Dockerfile sets {sorted(unread)}, which nothing reads"


def test_every_variable_production_requires_is_set_for_each_app_service() -> None:
    for name, service in app_services(_compose()).items():
        environment = _interpolated(service)
        missing = {variable for variable in REQUIRED_IN_PRODUCTION if not environment.get(variable)}
        assert not missing, f"{name} does not set {sorted(missing)}"


def test_secrets_are_required_from_the_env_file_never_written_in_compose() -> None:
    compose_text = (DOCKER_DIR / "compose.yaml").read_text(encoding="utf-8")
    required_refs = {name for name, operator, _ in references(compose_text) if operator.endswith("?")}
    assert {
        "SECRET_KEY",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
        "MEDIA_S3_ACCESS_KEY_ID",
        "MEDIA_S3_SECRET_ACCESS_KEY",
        "MINIO_ROOT_PASSWORD",
    } <= required_refs
    required, optional = env_example()
    # Each required variable is a line to fill in in the template; each optional one is listed.
    assert required_refs <= set(required), sorted(required_refs - set(required))
    all_refs = {name for name, _, _ in references(compose_text)}
    assert all_refs <= set(required) | set(optional), sorted(all_refs - set(required) - set(optional))
    # The template holds no secret value.
    for name in ("SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "MEDIA_S3_SECRET_ACCESS_KEY"):
        assert required[name] == ""
    with pytest.raises(ValueError, match="SECRET_KEY"):
        interpolate(service_environment(_compose()["services"]["web"])["SECRET_KEY"], {})


def test_web_and_every_worker_share_the_database_broker_and_bucket_settings() -> None:
    services = {name: _interpolated(s) for name, s in app_services(_compose()).items()}
    web = services["web"]
    for name, environment in services.items():
        for variable in SHARED_BY_WEB_AND_WORKERS:
            assert environment.get(variable) == web.get(variable), f"{name} differs from web on {variable}"


def test_web_delivers_media_through_nginx_and_nginx_internal_location_matches_the_prefix() -> None:
    web = _interpolated(_compose()["services"]["web"])
    assert web["MEDIA_DELIVERY"] == "accel"
    prefix = web.get("MEDIA_ACCEL_PREFIX", "/_protected/")
    conf = NGINX_CONF.read_text(encoding="utf-8")
    s3_location = re.search(
        r"location ~ \^" + re.escape(prefix) + r"s3/\(\?<s3_path>\.\*\)\$ \{(.*?)\n        \}", conf, re.S
    )
    assert s3_location, f"nginx.conf has no regex location for {prefix}s3/"
    assert re.search(r"^\s*internal;", s3_location.group(1), re.M)
    catch_all = re.search(r"location " + re.escape(prefix) + r" \{(.*?)\}", conf, re.S)
    assert catch_all and "internal;" in catch_all.group(1), f"{prefix} is not internal in nginx.conf"
    # The Host nginx sends to the store is the endpoint's: presigned URLs are signed for it.
    endpoint_host = urlsplit(web["MEDIA_S3_ENDPOINT_URL"]).netloc
    assert re.search(r'map \$scheme \$s3_upstream \{ default "' + re.escape(endpoint_host) + r'"; \}', conf)
    assert "proxy_set_header Host $s3_upstream;" in s3_location.group(1)
    assert 'proxy_set_header Authorization "";' in s3_location.group(1)


def test_nginx_sets_the_headers_the_settings_trust_and_proxies_to_gunicorns_port() -> None:
    compose = _compose()
    web = _interpolated(compose["services"]["web"])
    conf = NGINX_CONF.read_text(encoding="utf-8")
    proxy_header = web["SECURE_PROXY_SSL_HEADER"].split(":")[0].strip()
    assert f"proxy_set_header {proxy_header} $scheme;" in conf
    assert f"proxy_set_header {web['GRADCAM_CLIENT_IP_HEADER']} $remote_addr;" in conf
    assert web.get("GRADCAM_TRUSTED_PROXY_COUNT", "1") == "1"  # nginx is the only proxy
    upstream = re.search(r'map \$scheme \$web_upstream \{ default "([\w.-]+):(\d+)"; \}', conf)
    assert upstream, "nginx.conf has no web upstream"
    assert upstream.group(1) in compose["services"]
    bind = re.search(r"--bind \S+:(\d+)", dockerfile_facts().env["GUNICORN_CMD_ARGS"])
    assert bind and bind.group(1) == upstream.group(2)
    # /static/ is served from the volume the `static` one-shot fills.
    nginx_mounts = compose["services"]["nginx"]["volumes"]
    static_alias = re.search(r"location /static/ \{\s*alias (\S+);", conf)
    assert static_alias and f"static-files:{static_alias.group(1).rstrip('/')}:ro" in nginx_mounts
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx_mounts


def test_settings_load_with_the_compose_environment_as_production(tmp_path: Path) -> None:
    """The settings module itself, imported in a fresh process with exactly web's and a
    worker's environment (plus the Dockerfile's ENV): it must accept every value."""
    compose = _compose()
    facts = dockerfile_facts()
    for name in ("web", "worker"):
        environment = {
            **{k: v for k, v in facts.env.items() if k not in {"PATH"}},
            **_interpolated(compose["services"][name]),
        }
        scratch = tmp_path / name
        environment.update(
            GRADCAM_VAR_DIR=str(scratch / "var"),
            MEDIA_ROOT=str(scratch / "media"),
            STATIC_ROOT=str(scratch / "static"),
            PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        )
        probe = (
            "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({"
            "'debug': s.DEBUG, 'engine': s.DATABASES['default']['ENGINE'], 'broker': 'redis' in s.Q_CLUSTER,"
            "'cache': s.CACHES['default']['BACKEND'], 'bucket': 'media_bucket' in s.STORAGES,"
            "'delivery': s.MEDIA_DELIVERY, 'proxy': list(s.SECURE_PROXY_SSL_HEADER or []),"
            "'hosts': s.ALLOWED_HOSTS, 'ssl_redirect': s.SECURE_SSL_REDIRECT, 'sandbox': s.GRADCAM_SANDBOX}))"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (
            f"{name}: settings refused the compose environment: {result.stderr[-1500:]}"
        )
        loaded = json.loads(result.stdout.strip().splitlines()[-1])
        assert loaded["debug"] is False and loaded["ssl_redirect"] is True and loaded["sandbox"] == "bwrap"
        assert loaded["engine"] == "django.db.backends.postgresql"
        assert loaded["broker"] and loaded["cache"].endswith("RedisCache") and loaded["bucket"]
        assert loaded["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
        assert loaded["hosts"] == ["studio.example.org"]
        assert loaded["delivery"] == ("accel" if name == "web" else "presigned")


def test_workers_scale_out_with_their_own_disk_and_the_sandbox_permissions() -> None:
    services = _compose()["services"]
    assert "replicas" in services["worker"]["deploy"]
    for name in ("web", "worker", "gpu-worker"):
        for volume in services[name].get("volumes", []):
            # Anonymous volumes only: one per container, nothing shared between web and workers.
            assert isinstance(volume, dict) and "source" not in volume, (
                f"{name} mounts a shared volume: {volume}"
            )
        assert "manage.py" in " ".join(services[name]["command"]) or name == "web"
    for name in ("worker", "gpu-worker"):
        assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(
            services[name]["security_opt"]
        )
        assert services[name]["command"] == ["python", "manage.py", "qcluster"]
    assert "security_opt" not in services["web"] and "privileged" not in services["worker"]
    gpu = services["gpu-worker"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["TF_VARIANT"] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["web"]["command"] == ["gunicorn", "gradcam_site.wsgi"]


def test_dockerfile_copies_files_that_exist_and_matches_the_python_and_requirements() -> None:
    facts = dockerfile_facts()
    ignored = (DOCKER_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    for sources in facts.copies:
        for source in sources:
            assert (REPO / source).exists(), f"docker/Dockerfile copies {source}, which does not exist"
            assert source not in ignored, f"{source} is copied but excluded by Dockerfile.dockerignore"
    copied = {source for sources in facts.copies for source in sources}
    # Every top-level package the web server or the workers import, and the requirements.
    for needed in (
        "requirements.txt",
        "manage.py",
        "gradcam_site",
        "accounts",
        "analyses",
        "audit",
        "gradcam3d",
    ):
        assert needed in copied, f"docker/Dockerfile does not copy {needed}"
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    target = re.search(r'target-version = "py3(\d+)"', pyproject)
    assert target and all(f"python:3.{target.group(1)}-slim" in image for image in facts.base_images)
    assert facts.user not in {"root", "0"}
    assert "docker/healthcheck.py" in facts.healthcheck and (DOCKER_DIR / "healthcheck.py").exists()
    assert "collectstatic" in facts.text and facts.env["STATIC_ROOT"]
    assert "gunicorn" in facts.cmd and (REPO / "gradcam_site" / "wsgi.py").exists()
    assert "bubblewrap" in facts.text


def test_the_gpu_variant_installs_tensorflow_with_cuda_at_the_pinned_version() -> None:
    """The Dockerfile's own sed expression, applied to requirements.txt."""
    facts = dockerfile_facts()
    expression = re.search(r"sed -E 's/(.+?)/(.+?)/'", facts.text)
    assert expression, "no sed expression for TF_VARIANT=gpu in docker/Dockerfile"
    pattern, replacement = expression.group(1), expression.group(2).replace("\\[", "[").replace("\\]", "]")
    requirements = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    cpu_pins = [line for line in requirements if re.match(pattern, line)]
    assert len(cpu_pins) == 1, cpu_pins
    version = cpu_pins[0].split("==")[1]
    assert re.sub(pattern, replacement, cpu_pins[0]) == f"tensorflow[and-cuda]=={version}"


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    """`nginx -t` on docker/nginx.conf itself; only the certificate and static paths are moved
    into tmp_path (upstreams are resolved per request, so none has to resolve here)."""
    from tests.deploy.test_nginx_accel import nginx_test_config, self_signed_certificate

    nginx = require_tool("nginx", debian_package="nginx")
    config = nginx_test_config(tmp_path, certificate=self_signed_certificate(tmp_path), replacements={})
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config), "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
