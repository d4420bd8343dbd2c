"""Worker throughput: analyses per minute with 1 and with 2 django-q2 worker clusters (issue 12).

    .venv/bin/python bench/throughput.py [--analyses 12] [--workers 1] [--database-url URL]
                                         [--redis-url URL] [--media-root DIR] [--env NAME=VALUE ...]

Each cluster is a separate `manage.py qcluster` process (its own process group), as a worker
machine would run one, on the Redis broker: a redis-server without persistence is started on a
free loopback port (6390-6399) unless --redis-url names one. The database is a throwaway SQLite
file unless --database-url is given (it is migrated; use an empty one). The clusters share one
MEDIA_ROOT on this machine (a temporary folder, or --media-root); --env NAME=VALUE is set for this
process and every cluster, e.g. MEDIA_BUCKET and its credentials to run on an object store.

The analyses are the demo model's (tests/demo_cache.py: `python -m demo`, built once and cached)
on its correctly labelled clip, submitted through `analysis_create` as a request would. Per
configuration: the clusters start, a warm-up batch (one analysis per worker) runs untimed so
engines and spare engines are warm, then --analyses are submitted at once and timed until the
last is final. Prints analyses/minute for 1 and 2 clusters, the ratio (the baseline is the
1-cluster figure of the same run), how the work was spread, and what bounds it here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FINAL = ("succeeded", "failed", "cancelled")
REDIS_PORTS = range(6390, 6400)


def _start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on the first free port of REDIS_PORTS, without persistence."""
    for port in REDIS_PORTS:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                continue
        process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return process, f"redis://127.0.0.1:{port}/0"
            time.sleep(0.05)
        process.kill()
    raise SystemExit(f"could not start redis-server on a port in {REDIS_PORTS.start}-{REDIS_PORTS.stop - 1}")


def _setup_django(*, environment: dict[str, str]) -> None:
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gradcam_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _library(*, media_root: Path) -> tuple[Any, Any, Any]:
    """The owner, the demo classifier and its correctly labelled clip, as rows with files."""
    import json

    from django.contrib.auth import get_user_model

    from tests.demo_cache import build_demo, demo_cache_dir
    from tests.worker.conftest import make_classifier, make_video, run_engine_cli

    cache = demo_cache_dir()
    build_demo(out_dir=cache)
    demo = json.loads((cache / "demo.json").read_text())
    model_path = cache / demo["model"]
    owner, _ = get_user_model().objects.get_or_create(username="throughput_bench")
    classifier = make_classifier(
        owner=owner,
        model_path=model_path,
        inspection=run_engine_cli("inspect", str(model_path), timeout=120),
        media_root=media_root,
        labels=list(demo["class_names"]),
    )
    clip = next(v for v in demo["videos"] if v["labelled_class"] == v["true_class"])
    video = make_video(owner=owner, video_path=cache / clip["path"], media_root=media_root)
    return owner, classifier, video


def _start_clusters(count: int, *, environment: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    clusters = []
    for index in range(count):
        with open(logs / f"qcluster-{count}-{index}.log", "wb") as log:
            clusters.append(
                subprocess.Popen(
                    [sys.executable, str(REPO / "manage.py"), "qcluster"],
                    cwd=REPO,
                    env={**os.environ, **environment},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped as a whole
                )
            )
    return clusters


def _stop_clusters(clusters: list[subprocess.Popen[bytes]]) -> None:
    for process in clusters:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for process in clusters:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _run_batch(count: int, *, library: tuple[Any, Any, Any], timeout: float) -> tuple[float, list[Any]]:
    """Submit `count` analyses at once; (seconds until the last is final, the final rows)."""
    from analyses.models import Analysis
    from analyses.runs.services import analysis_create

    owner, classifier, video = library
    started = time.monotonic()
    ids = [
        analysis_create(user=owner, classifier=classifier, video=video, expected_class=None, params={}).pk
        for _ in range(count)
    ]
    while time.monotonic() - started < timeout:
        rows = list(Analysis.objects.filter(pk__in=ids))
        if all(row.status in FINAL for row in rows):
            return time.monotonic() - started, rows
        time.sleep(0.25)
    raise SystemExit(f"{count} analyses were not all final after {timeout:.0f} s")


def _cluster_of(lease: str, clusters: list[subprocess.Popen[bytes]]) -> str:
    """Which cluster's worker held `lease` ("host:pid:ticks"): its process group is the cluster's."""
    try:
        group = os.getpgid(int(lease.split(":")[1]))
    except (IndexError, ValueError, ProcessLookupError):
        return "?"  # the worker was recycled since
    return next((f"cluster {i + 1}" for i, c in enumerate(clusters) if c.pid == group), "?")


def _measure(
    count: int, *, arguments: argparse.Namespace, environment: dict, library: tuple, logs: Path
) -> dict:
    from django_q.brokers import get_broker

    get_broker().purge_queue()
    clusters = _start_clusters(count, environment=environment, logs=logs)
    try:
        _run_batch(count * arguments.workers, library=library, timeout=arguments.timeout)  # warm-up
        seconds, rows = _run_batch(arguments.analyses, library=library, timeout=arguments.timeout)
        spread: dict[str, int] = {}
        for row in rows:
            where = _cluster_of(row.worker_lease, clusters)
            spread[where] = spread.get(where, 0) + 1
    finally:
        _stop_clusters(clusters)
    succeeded = sum(row.status == "succeeded" for row in rows)
    # Seconds each analysis ran (claimed to final): if it grows with more clusters, the engines
    # are sharing the CPU rather than adding to it.
    runs = [(row.finished_at - row.started_at).total_seconds() for row in rows if row.started_at]
    return {
        "seconds": seconds,
        "per_minute": len(rows) * 60 / seconds,
        "succeeded": succeeded,
        "spread": spread,
        "run_seconds": sum(runs) / max(len(runs), 1),
        "load": os.getloadavg()[0],
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", type=int, default=12, help="timed analyses per configuration")
    parser.add_argument("--workers", type=int, default=1, help="GRADCAM_WORKERS of each cluster")
    parser.add_argument("--database-url", default="", help="default: a throwaway SQLite file")
    parser.add_argument("--redis-url", default="", help="default: a redis-server started here")
    parser.add_argument(
        "--media-root", default="", help="shared by the clusters; default: a temporary folder"
    )
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="for every process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per batch")
    return parser.parse_args()


def main() -> None:
    arguments = _arguments()
    scratch = Path(tempfile.mkdtemp(prefix="gradcam-throughput-"))
    redis_process = None
    redis_url = arguments.redis_url
    if not redis_url:
        redis_process, redis_url = _start_redis(scratch)
    media_root = Path(arguments.media_root or scratch / "media")
    environment = {
        "DATABASE_URL": arguments.database_url or f"sqlite:///{scratch / 'bench.sqlite3'}",
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(media_root),
        "GRADCAM_ALLOW_DEV_SECRET": os.environ.get("GRADCAM_ALLOW_DEV_SECRET", "1"),
        "GRADCAM_WORKERS": str(arguments.workers),
        # One bench user submits every batch at once: lift the per-user cap on active analyses.
        "GRADCAM_QUOTA_ACTIVE_ANALYSES": str(max(10, arguments.analyses + 4)),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **dict(item.split("=", 1) for item in arguments.env),
    }
    try:
        _setup_django(environment=environment)
        library = _library(media_root=media_root)
        figures = {
            n: _measure(n, arguments=arguments, environment=environment, library=library, logs=scratch)
            for n in (1, 2)
        }
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)
    _report(figures, arguments=arguments, database=environment["DATABASE_URL"].split(":")[0])
    shutil.rmtree(scratch, ignore_errors=True)


def _report(figures: dict[int, dict], *, arguments: argparse.Namespace, database: str) -> None:
    cores = len(os.sched_getaffinity(0))
    print(
        f"{arguments.analyses} demo analyses per configuration, Redis broker, {database}, "
        f"GRADCAM_WORKERS={arguments.workers} per cluster, {cores} CPU cores"
    )
    for count, figure in figures.items():
        print(
            f"  {count} cluster(s): {figure['per_minute']:6.2f} analyses/min ({figure['seconds']:.1f} s, "
            f"{figure['succeeded']}/{arguments.analyses} succeeded, {figure['run_seconds']:.1f} s per run, "
            f"spread {figure['spread']}, load average {figure['load']:.1f} at the end)"
        )
    ratio = figures[2]["per_minute"] / figures[1]["per_minute"]
    one, two = min(arguments.workers, cores), min(2 * arguments.workers, cores)
    print(f"  ratio 2 clusters / 1 cluster: {ratio:.2f}x")
    # Each engine is one TensorFlow process; past one engine per core they only share the CPU.
    print(
        f"  bound: {2 * arguments.workers} engines on {cores} cores, so at most {two / one:.1f}x if an "
        f"engine kept one core busy; less where TensorFlow already spreads one engine over several"
    )


if __name__ == "__main__":
    main()
