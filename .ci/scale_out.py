"""CI: the platform on several "machines", on loopback, with the production engines.

Real PostgreSQL (the database server .ci/run started; SCALE_DATABASE_URL names it and this
script makes its own database there), a real Redis (Debian's redis-server, no persistence), a
real S3-compatible server (moto's standalone server), gunicorn for the web, and two separate
django-q2 worker clusters. Each of the three app processes has its own MEDIA_ROOT and
GRADCAM_VAR_DIR, as separate machines would: they share only the database, Redis and the
bucket, so anything that still went through a local disk would fail here.

1. 20 analyses submitted over HTTP (API token) all succeed exactly once (one attempt each, one
   "succeeded" task result each), spread over both clusters; one result file and the ZIP are
   fetched through the web's permission check and the presigned redirect, and match the
   manifest's hashes; another user's token gets 404.
2. One cluster is SIGKILLed while it runs an analysis: every analysis still ends succeeded, the
   killed one retried (attempt 2) by the other cluster.
3. Redis is SIGKILLed and restarted empty while analyses are queued: none is lost (the reaper
   queues the lost ones again), every one ends succeeded.

Usage: SCALE_DATABASE_URL=postgres://user:pw@127.0.0.1:port/db .venv/bin/python .ci/scale_out.py
Exits non-zero, with the tails of the servers' logs, when anything fails.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PYTHON = str(REPO / ".venv" / "bin" / "python")
FINAL = ("succeeded", "failed", "cancelled")
STALE_SECONDS = 15  # how soon the reaper calls a run dead or a queued task lost
PHASE_TIMEOUT_SECONDS = 900


class ScaleOutFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"[scale-out +{time.monotonic() - STARTED:.0f}s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], *, timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (requests.RequestException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise ScaleOutFailure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Processes:
    """The servers this run started, each with a log file; stopped (process groups) at exit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, command: list[str], *, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log_file = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.running.pop(name)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.running):
            process = self.running[name]
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill(name)
            self.running.pop(name, None)

    def tails(self) -> str:
        parts = []
        for log_path in sorted(self.root.glob("*.log")):
            lines = log_path.read_text(errors="replace").splitlines()[-25:]
            parts.append(f"--- {log_path.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)


def fresh_database(admin_url: str) -> str:
    """A new, empty database on the server of `admin_url`; its URL."""
    import psycopg

    parts = urlsplit(admin_url)
    name = "gradcam_scale_out"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def base_environment(*, database_url: str, redis_url: str, s3_url: str) -> dict[str, str]:
    """Production settings (DEBUG off, the sandbox on), relaxed only for plain HTTP on loopback."""
    return {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": "scale-out-" + hashlib.sha256(b"scale-out").hexdigest(),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MEDIA_BUCKET": "gradcam-media",
        "MEDIA_S3_ENDPOINT_URL": s3_url,
        "MEDIA_S3_REGION": "us-east-1",
        "MEDIA_S3_ACCESS_KEY_ID": "scale-out-key",
        "MEDIA_S3_SECRET_ACCESS_KEY": "scale-out-secret",
        "MEDIA_DELIVERY": "presigned",
        "GRADCAM_WORKERS": "1",
        "GRADCAM_HEARTBEAT_STALE_SECONDS": str(STALE_SECONDS),
        "GRADCAM_QUOTA_ACTIVE_ANALYSES": "100",
        "GRADCAM_API_ANALYSES_PER_HOUR": "1000",
        "LOG_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def machine_environment(base: dict[str, str], root: Path, name: str) -> dict[str, str]:
    """One "machine": its own media cache and var folder."""
    media, var = root / name / "media", root / name / "var"
    media.mkdir(parents=True)
    var.mkdir(parents=True)
    return {**base, "MEDIA_ROOT": str(media), "GRADCAM_VAR_DIR": str(var)}


# --------------------------------------------------------------------------- the services
def start_redis(processes: Processes, *, port: int) -> None:
    processes.start(
        "redis",
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(processes.root),
        ],
    )
    wait_until(
        "Redis", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, timeout=30
    )


def start_object_store(processes: Processes, *, port: int) -> str:
    processes.start("s3", [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
    url = f"http://127.0.0.1:{port}"
    wait_until("the S3 server", lambda: requests.get(url, timeout=2).status_code < 500, timeout=60)
    import boto3

    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="scale-out-key",
        aws_secret_access_key="scale-out-secret",
    ).create_bucket(Bucket="gradcam-media")
    return url


def start_web(processes: Processes, env: dict[str, str], *, port: int) -> str:
    processes.start(
        "web",
        [
            str(REPO / ".venv" / "bin" / "gunicorn"),
            "gradcam_site.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--timeout",
            "300",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(
        "gunicorn", lambda: requests.get(f"{base}/accounts/login/", timeout=5).status_code == 200, timeout=120
    )
    return base


def start_cluster(processes: Processes, env: dict[str, str], *, name: str) -> int:
    """A worker cluster in its own session: the session id of its processes is its pid."""
    return processes.start(name, [PYTHON, "manage.py", "qcluster"], env=env).pid


def manage(env: dict[str, str], *args: str) -> str:
    completed = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if completed.returncode != 0:
        raise ScaleOutFailure(f"manage.py {' '.join(args)} failed:\n{completed.stderr[-3000:]}")
    return completed.stdout


USER_SCRIPT = """
from django.contrib.auth import get_user_model
from accounts.tokens import api_token_create
user = get_user_model().objects.create_user(username={name!r}, password="scale-out-password-42")
print(api_token_create(user=user, name="scale-out", expires_in_days=None)[1])
"""


def api_session(env: dict[str, str], *, username: str) -> requests.Session:
    secret = manage(env, "shell", "-c", USER_SCRIPT.format(name=username)).strip().splitlines()[-1]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"
    return session


# --------------------------------------------------------------------------- the work
class Platform:
    """The web (over HTTP, as a script would use it) and the database (read-only checks)."""

    def __init__(self, *, base: str, api: requests.Session, clusters: dict[str, int]) -> None:
        self.base = base
        self.api = api
        self.clusters = clusters  # name -> session id (the cluster's pid)
        self.ran_on: dict[str, set[str]] = {}  # analysis code -> clusters seen running it

    def upload(self, kind: str, path: str, **fields: Any) -> str:
        with open(path, "rb") as file:
            response = self.api.post(
                f"{self.base}/api/v1/{kind}/", files={"file": file}, data=fields, timeout=300
            )
        if response.status_code != 202:
            raise ScaleOutFailure(f"uploading {path}: {response.status_code} {response.text[:500]}")
        code = response.json()["code"]
        done = wait_until(
            f"the {kind} upload to be processed",
            lambda: (
                (obj := self.api.get(f"{self.base}/api/v1/{kind}/{code}/", timeout=30).json())["status"]
                != "processing"
                and obj
            ),
            timeout=300,
        )
        if done["status"] != "ready":
            raise ScaleOutFailure(f"{path} was refused: {done.get('status_message')}")
        return str(code)

    def submit(self, *, classifier: str, video: str, count: int, title: str) -> list[str]:
        codes = []
        for index in range(count):
            response = self.api.post(
                f"{self.base}/api/v1/analyses/",
                json={
                    "classifier": classifier,
                    "video": video,
                    "expected_class": 0,
                    "method": "gradcam",
                    "title": f"{title} {index + 1}",
                },
                timeout=60,
            )
            if response.status_code != 202:  # accepted: workers run it
                raise ScaleOutFailure(f"submitting: {response.status_code} {response.text[:500]}")
            codes.append(str(response.json()["code"]))
        return codes

    def rows(self, codes: list[str]) -> list[Any]:
        from analyses.runs.models import Analysis

        return list(Analysis.objects.filter(code__in=codes).order_by("created_at"))

    def watch(self, codes: list[str]) -> list[Any]:
        """The rows now, noting which cluster runs each running one (by its worker's session)."""
        rows = self.rows(codes)
        for row in rows:
            if row.status == "running" and row.worker_lease:
                cluster = self.cluster_of(row.worker_lease)
                if cluster:
                    self.ran_on.setdefault(row.code.hex, set()).add(cluster)
        return rows

    def cluster_of(self, lease: str) -> str | None:
        try:
            session = os.getsid(int(lease.rsplit(":", 2)[1]))
        except (ValueError, ProcessLookupError, IndexError):
            return None
        return next((name for name, sid in self.clusters.items() if sid == session), None)

    def wait_final(
        self, codes: list[str], *, what: str, during: Callable[[list[Any]], None] | None = None
    ) -> list[Any]:
        deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS
        while True:
            rows = self.watch(codes)
            if during is not None:
                during(rows)
            if len(rows) == len(codes) and all(row.status in FINAL for row in rows):
                return rows
            if time.monotonic() > deadline:
                states = sorted((row.status, row.stage) for row in rows)
                raise ScaleOutFailure(f"{what}: not all final after {PHASE_TIMEOUT_SECONDS} s: {states}")
            time.sleep(0.5)


def succeeded_results(codes: list[str]) -> dict[str, int]:
    """analysis code (hex) -> how many of its django-q2 task results say "succeeded"."""
    from django_q.models import Task

    from analyses.runs.models import Analysis

    by_pk = {pk: code.hex for pk, code in Analysis.objects.filter(code__in=codes).values_list("pk", "code")}
    counts = dict.fromkeys(by_pk.values(), 0)
    for task in Task.objects.filter(func="analyses.tasks.run_analysis_task"):
        code = by_pk.get(task.args[0]) if task.args else None
        if code is not None and task.result == "succeeded":
            counts[code] += 1
    return counts


def check_all_succeeded(rows: list[Any], *, what: str) -> None:
    bad = [
        (row.code.hex[:8], row.status, row.error_message[:200]) for row in rows if row.status != "succeeded"
    ]
    if bad:
        raise ScaleOutFailure(f"{what}: not every analysis succeeded: {bad}")


def phase_spread(platform: Platform, *, classifier: str, video: str) -> list[str]:
    codes = platform.submit(classifier=classifier, video=video, count=20, title="spread")
    log("20 analyses submitted over HTTP; waiting for both clusters to finish them")
    rows = platform.wait_final(codes, what="20 analyses on two clusters")
    check_all_succeeded(rows, what="20 analyses on two clusters")
    retried = [(row.code.hex[:8], row.attempts) for row in rows if row.attempts != 1]
    if retried:
        raise ScaleOutFailure(f"some analyses took more than one attempt: {retried}")
    results = succeeded_results(codes)
    if sorted(set(results.values())) != [1]:
        raise ScaleOutFailure(f"each analysis must have exactly one succeeded run: {results}")
    per_cluster = {name: sum(name in seen for seen in platform.ran_on.values()) for name in platform.clusters}
    log(f"20 succeeded, one attempt and one succeeded run each; seen running on: {per_cluster}")
    if not all(per_cluster.values()):
        raise ScaleOutFailure(f"the analyses were not spread over both clusters: {per_cluster}")
    return codes


def check_result_files(platform: Platform, *, code: str, stranger: requests.Session) -> None:
    """A heatmap video through the permission check and the presigned redirect, its bytes (and a
    Range of them) matching the manifest; the ZIP the same way; 404 for another user's token."""
    analysis = platform.api.get(f"{platform.base}/api/v1/analyses/{code}/", timeout=30).json()
    record = next(f for f in analysis["files"] if f["media_type"] == "video/mp4")
    url = record["url"]
    answer = platform.api.get(url, allow_redirects=False, timeout=30)
    if answer.status_code != 302:
        raise ScaleOutFailure(
            f"a result file answered {answer.status_code}, not a redirect: {answer.text[:300]}"
        )
    body = requests.get(answer.headers["Location"], timeout=60).content
    if hashlib.sha256(body).hexdigest() != record["sha256"]:
        raise ScaleOutFailure(f"{record['path']} from the bucket does not match the manifest's sha256")
    part = requests.get(answer.headers["Location"], headers={"Range": "bytes=100-199"}, timeout=60)
    if part.status_code != 206 or part.content != body[100:200]:
        raise ScaleOutFailure(f"a Range request on the presigned address answered {part.status_code}")
    zipped = platform.api.get(analysis["zip_url"], timeout=300)  # follows the redirect
    if zipped.status_code != 200:
        raise ScaleOutFailure(f"the ZIP answered {zipped.status_code}")
    names = set(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist())
    missing = {str(f["path"]) for f in analysis["files"] if f["path"] != "manifest.json"} - names
    if missing:
        raise ScaleOutFailure(f"the ZIP lacks {sorted(missing)[:5]}")
    for address in (url, analysis["zip_url"], f"{platform.base}/api/v1/analyses/{code}/"):
        refused = stranger.get(address, allow_redirects=False, timeout=30)
        if refused.status_code != 404:
            raise ScaleOutFailure(f"another user's token got {refused.status_code} on {address}")
    log(
        f"result file ({len(body)} bytes, Range too) and ZIP ({len(names)} files) served; a stranger gets 404"
    )


def phase_kill_cluster(platform: Platform, processes: Processes, *, classifier: str, video: str) -> None:
    codes = platform.submit(classifier=classifier, video=video, count=8, title="kill")
    killed: list[str] = []

    def kill_b_once_it_runs(rows: list[Any]) -> None:
        if killed:
            return
        for row in rows:
            if (
                row.status == "running"
                and row.worker_lease
                and platform.cluster_of(row.worker_lease) == "cluster-b"
            ):
                processes.kill("cluster-b")
                killed.append(row.code.hex)
                log(f"SIGKILLed cluster-b while it ran analysis {row.code.hex[:8]} (attempt {row.attempts})")
                return

    rows = platform.wait_final(codes, what="after SIGKILL of a cluster", during=kill_b_once_it_runs)
    if not killed:
        raise ScaleOutFailure("cluster-b never ran one of the 8 analyses: nothing was killed")
    check_all_succeeded(rows, what="after SIGKILL of a cluster")
    victim = next(row for row in rows if row.code.hex == killed[0])
    if victim.attempts != 2 or platform.cluster_of(victim.worker_lease) != "cluster-a":
        raise ScaleOutFailure(
            f"the killed analysis ended with {victim.attempts} attempts on {platform.cluster_of(victim.worker_lease)}"
        )
    results = succeeded_results(codes)
    if sorted(set(results.values())) != [1]:
        raise ScaleOutFailure(f"each analysis must have exactly one succeeded run: {results}")
    log(f"all 8 succeeded; the killed one was retried by cluster-a (attempt {victim.attempts})")


def phase_restart_redis(
    platform: Platform, processes: Processes, *, port: int, classifier: str, video: str
) -> None:
    codes = platform.submit(classifier=classifier, video=video, count=8, title="redis")
    restarted: list[int] = []

    def restart_once_some_are_queued(rows: list[Any]) -> None:
        if restarted:
            return
        queued = sum(row.status == "queued" for row in rows)
        if any(row.status == "running" for row in rows) and queued >= 3:
            processes.kill("redis")
            start_redis(processes, port=port)
            restarted.append(queued)
            log(f"Redis SIGKILLed and restarted empty with {queued} analyses queued")

    rows = platform.wait_final(codes, what="after a Redis restart", during=restart_once_some_are_queued)
    if not restarted:
        raise ScaleOutFailure("Redis was never restarted: no moment with analyses both running and queued")
    check_all_succeeded(rows, what="after a Redis restart")
    results = succeeded_results(codes)
    if sorted(set(results.values())) != [1]:
        raise ScaleOutFailure(f"each analysis must have exactly one succeeded run: {results}")
    requeued = lost_tasks_enqueued_again()
    if requeued < 1:
        raise ScaleOutFailure("no reaper run re-enqueued a lost task: the restart lost nothing to recover")
    log(
        f"all 8 succeeded after the Redis restart; none lost ({requeued} lost tasks re-enqueued), none run twice"
    )


def lost_tasks_enqueued_again() -> int:
    """How many lost tasks the reaper runs so far queued again (their results say)."""
    from django_q.models import Task

    results = Task.objects.filter(func="analyses.tasks.reap_stale_analyses_task").values_list(
        "result", flat=True
    )
    return sum(int(result.get("enqueued_again", 0)) for result in results if isinstance(result, dict))


def main() -> int:
    admin_url = os.environ.get("SCALE_DATABASE_URL", "")
    if not admin_url.startswith("postgres"):
        print("SCALE_DATABASE_URL must name a PostgreSQL server (.ci/run passes its own)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="gradcam-scale-out-"))
    processes = Processes(root)
    try:
        run(processes, root=root, admin_url=admin_url)
    except ScaleOutFailure as failure:
        print(f"SCALE-OUT FAILED: {failure}\n{processes.tails()}", file=sys.stderr)
        return 1
    finally:
        processes.stop_all()
    log("done")
    return 0


def run(processes: Processes, *, root: Path, admin_url: str) -> None:
    from tests.demo_cache import build_demo, demo_cache_dir

    demo = build_demo(out_dir=demo_cache_dir())  # reuses the cached build of the test run
    redis_port = free_port()
    start_redis(processes, port=redis_port)
    s3_url = start_object_store(processes, port=free_port())
    base = base_environment(
        database_url=fresh_database(admin_url), redis_url=f"redis://127.0.0.1:{redis_port}/0", s3_url=s3_url
    )
    web_env = machine_environment(base, root, "web")
    manage(web_env, "migrate", "--noinput")
    web = start_web(processes, web_env, port=free_port())
    cluster_envs = {name: machine_environment(base, root, name) for name in ("cluster-a", "cluster-b")}
    clusters = {name: start_cluster(processes, env, name=name) for name, env in cluster_envs.items()}
    log(f"PostgreSQL, Redis, S3 (moto), gunicorn and two worker clusters up: {clusters}")

    os.environ.update(machine_environment(base, root, "checker"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "gradcam_site.settings"
    import django

    django.setup()
    platform = Platform(base=web, api=api_session(web_env, username="scaler"), clusters=clusters)
    stranger = api_session(web_env, username="stranger")
    classifier = platform.upload(
        "classifiers", demo["model"], class_map_text=Path(demo["classmap"]).read_text()
    )
    video = platform.upload("videos", demo["videos"][0]["path"], expected_class=0)
    log("model and video uploaded through the web and processed by the workers (from the bucket)")

    codes = phase_spread(platform, classifier=classifier, video=video)
    check_result_files(platform, code=codes[0], stranger=stranger)
    phase_kill_cluster(platform, processes, classifier=classifier, video=video)
    clusters["cluster-b"] = start_cluster(processes, cluster_envs["cluster-b"], name="cluster-b")
    log("cluster-b started again (a machine back after its crash)")
    phase_restart_redis(platform, processes, port=redis_port, classifier=classifier, video=video)


STARTED = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
