"""CI: schemathesis against the LIVE OpenAPI schema of a running server, on a seeded database.

Builds a throwaway SQLite database and MEDIA_ROOT in a temporary folder, migrates, seeds it
(`manage.py seed_api_examples`: two users, a team, the demo model and a demo video processed,
a succeeded analysis with real results, a share, a share link, a comparison, and objects made to
be deleted), starts `manage.py runserver --noreload` on a free loopback port (DEBUG off, as in
production, plain HTTP as in the tests), authenticates as the seeded owner with a personal API
token, downloads the live schema and runs schemathesis on every operation, with the seeded codes bound to
the path parameters and body fields that name objects, so operations on `{code}` reach real
objects and not only 404s. No worker runs: the seed processed everything the reads need, and
what the fuzzer queues stays queued.

Checks: not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance. Exits non-zero, printing schemathesis's failing cases (with a curl
line to reproduce each) and the tail of the server's log, when any check fails, or when the run
is over its time budget.

Usage: .venv/bin/python .ci/api_fuzz.py [--max-examples 8] [--budget 270] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.demo_cache import build_demo, demo_cache_dir  # noqa: E402

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SERVER_START_SECONDS = 60
# Plain HTTP on loopback, DEBUG off: the HTTPS-only defaults are switched off by name, as in the
# tests (tests/pytest_dev_secret.py).
SERVER_ENVIRONMENT = {
    "GRADCAM_ALLOW_DEV_SECRET": "1",
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "SECURE_HSTS_SECONDS": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
# Which seeded codes a parameter or body field named so takes, by the resource of its path.
PATH_PARAMETERS = {"user_code": "users", "path": "files"}
BODY_FIELDS = {
    "classifier": "classifiers",
    "video": "videos",
    "team": "teams",
    "analysis": "analyses",
    "a": "analyses",
    "b": "analyses",
    "target": "analyses",
}


class FuzzFailure(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manage(*arguments: str, env: dict[str, str], timeout: float) -> str:
    completed = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise FuzzFailure(
            f"manage.py {arguments[0]} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
        )
    return completed.stdout


def seed(*, env: dict[str, str]) -> dict[str, Any]:
    demo_dir = demo_cache_dir()
    build_demo(out_dir=demo_dir)  # reused when an unchanged build exists (make test made one)
    manage("migrate", "--noinput", "-v", "0", env=env, timeout=300)
    output = manage("seed_api_examples", "--demo-dir", str(demo_dir), env=env, timeout=600)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise FuzzFailure(f"seed_api_examples printed no JSON:\n{output[-2000:]}")
    return dict(json.loads(lines[-1]))


def wait_until_serving(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FuzzFailure(f"the server exited with status {process.returncode} before serving")
        try:
            requests.get(f"{base}/accounts/login/", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise FuzzFailure(f"the server did not answer within {SERVER_START_SECONDS} s")


def auth_headers(base: str, seeded: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The seeded owner's personal API token, as a script would send it."""
    if not seeded.get("token"):
        raise FuzzFailure("the seed printed no API token")
    return {"Authorization": f"Bearer {seeded['token']}"}, "personal API token"


def live_schema(base: str, headers: dict[str, str], folder: Path) -> dict[str, Any]:
    response = requests.get(
        f"{base}/api/v1/schema/",
        headers={**headers, "Accept": "application/vnd.oai.openapi+json"},
        timeout=60,
    )
    if response.status_code != 200:
        raise FuzzFailure(f"/api/v1/schema/ answered {response.status_code}: {response.text[:500]}")
    (folder / "schema.json").write_text(response.text, encoding="utf-8")
    return dict(response.json())


def body_fields(schema: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    """The top-level property names of an operation's request bodies (every media type)."""
    names: set[str] = set()
    for media in (operation.get("requestBody") or {}).get("content", {}).values():
        body = media.get("schema") or {}
        while "$ref" in body:
            target: Any = schema
            for part in body["$ref"].lstrip("#/").split("/"):
                target = target[part]
            body = target
        names.update((body.get("properties") or {}).keys())
    return names


def _toml(value: Any) -> str:
    # JSON strings and arrays of strings are valid TOML basic strings and arrays.
    return json.dumps(value)


def config_for(schema: dict[str, Any], seeded: dict[str, Any]) -> str:
    """schemathesis.toml: one dictionary per kind of seeded code, bound per operation to its path
    parameters and body fields. DELETE takes only the objects seeded to be deleted (else it would
    take away what the other operations read); a generated value now and then still tests 404s."""
    codes: dict[str, list[str]] = {k: v for k, v in seeded["codes"].items() if v}
    disposable: dict[str, list[str]] = {f"delete-{k}": v for k, v in seeded["disposable"].items() if v}
    lines = [
        f"[dictionaries.{_toml(name)}]\nvalues = {_toml(values)}\n"
        for name, values in {**codes, **disposable}.items()
    ]
    for path, item in sorted(schema["paths"].items()):
        resource = path.split("/")[3] if path.count("/") > 3 else ""
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            bindings: dict[str, str] = {}
            for name in re.findall(r"\{(\w+)\}", path):
                kind = PATH_PARAMETERS.get(name, resource if name == "code" else "")
                if method == "delete" and path.count("{") == 1:
                    kind = f"delete-{kind}"
                if kind in codes or kind in disposable:
                    bindings[f"path.{name}"] = kind
            for name in body_fields(schema, operation) & BODY_FIELDS.keys():
                if BODY_FIELDS[name] in codes:
                    bindings[f"body.{name}"] = BODY_FIELDS[name]
            if method == "delete" and path.count("{") > 1:
                bindings = {}  # never remove seeded members or files
            if not bindings:
                continue
            parameters = ", ".join(
                f"{_toml(key)} = {{ dictionary = {_toml(kind)}, probability = 0.9 }}"
                for key, kind in bindings.items()
            )
            lines.append(
                f"[[operations]]\ninclude-path = {_toml(path)}\ninclude-method = {_toml(method.upper())}\n"
                f"parameters = {{ {parameters} }}\n"
            )
    return "\n".join(lines)


def run_schemathesis(
    *, base: str, folder: Path, headers: dict[str, str], checks: str, max_examples: int, budget: float
) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(folder / "schemathesis.toml"),
        "run",
        str(folder / "schema.json"),
        "--url",
        base,
        "--checks",
        checks,
        "--max-examples",
        str(max_examples),
        "--workers",
        "1",
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
        "--no-color",
        *[argument for name, value in headers.items() for argument in ("-H", f"{name}: {value}")],
    ]
    try:
        return subprocess.run(command, cwd=folder, timeout=budget).returncode
    except subprocess.TimeoutExpired:
        raise FuzzFailure(f"schemathesis ran over its budget of {budget:.0f} s") from None


def stop(process: subprocess.Popen[bytes]) -> None:
    for signum, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main() -> int:  # long: one linear script, set-up to tear-down, easier read top to bottom
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=8, help="Test cases per operation and phase")
    parser.add_argument("--budget", type=float, default=270.0, help="Seconds schemathesis may run")
    parser.add_argument("--checks", default=CHECKS, help="schemathesis checks (comma-separated, or all)")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder (database, logs)")
    args = parser.parse_args()
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="gradcam-api-fuzz."))
    env = {
        **os.environ,
        **SERVER_ENVIRONMENT,
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "MEDIA_ROOT": str(folder / "media"),
        "GRADCAM_VAR_DIR": str(folder / "var"),
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    server: subprocess.Popen[bytes] | None = None
    status = 1
    try:
        seeded = seed(env=env)
        print(f"api_fuzz: seeded in {time.monotonic() - started:.0f} s: {json.dumps(seeded['codes'])[:400]}")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [sys.executable, str(REPO / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_serving(base, server)
        headers, how = auth_headers(base, seeded)
        schema = live_schema(base, headers, folder)
        (folder / "schemathesis.toml").write_text(config_for(schema, seeded), encoding="utf-8")
        print(f"api_fuzz: {len(schema['paths'])} paths at {base}, authenticated with a {how}")
        fuzz_started = time.monotonic()
        status = run_schemathesis(
            base=base,
            folder=folder,
            headers=headers,
            checks=args.checks,
            max_examples=args.max_examples,
            budget=args.budget,
        )
        print(f"api_fuzz: schemathesis exited {status} after {time.monotonic() - fuzz_started:.0f} s")
    except (FuzzFailure, requests.RequestException, subprocess.TimeoutExpired) as exc:
        print(f"api_fuzz: FAILED: {exc}")
        status = 1
    finally:
        if server is not None:
            stop(server)
        if status != 0 and log_path.is_file():
            server_errors = log_path.read_text(errors="replace")
            print(f"--- server log (tail) ---\n{server_errors[-6000:]}")
        if args.keep:
            print(f"api_fuzz: kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"api_fuzz: {'passed' if status == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
