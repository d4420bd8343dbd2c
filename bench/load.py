"""Load benchmark: N concurrent users against gunicorn on loopback, with a worker cluster running.

    .venv/bin/python bench/load.py [--users 50] [--seconds 150] [--baseline-seconds 30]
    .venv/bin/python bench/load.py --soak-minutes 10
    .venv/bin/python bench/load.py --database-url postgres://user:pw@127.0.0.1:5432/postgres

Everything lives in a temporary folder: a SQLite file database (or, with --database-url, a
fresh database created next to the one named there and dropped at the end), MEDIA_ROOT and the
app's TMPDIR. Seeding (in a child process): 50 users in 5 teams; the demo model and a demo video
uploaded and processed through the library services, one analysis run by the real engine (as a
worker would), then that analysis copied through the ORM for every user (`--per-user` finished
analyses each, results folders hard-linked, every other one shared with the team) plus two
failed ones each, so history pages have filters and a page 2 to show.

Then gunicorn (gthread, 2 x CPU workers) serves `gradcam_site.wsgi` with DEBUG off and
production settings except the HTTPS-only ones (plain HTTP on loopback, switched off by name as
tests/pytest_dev_secret.py does), one django-q2 cluster runs the analyses users submit, and
bench/load_users.py (locust, in its own process) drives the users: first 1 user for the
baseline, then N users. Log-ins are measured apart (every user logs in at once: one PBKDF2 hash
each); the figures are for the steady state after. Prints req/s, p50/p95/p99 per request kind
and for all HTML pages together, errors, and the N-user figures as ratios to the 1-user ones.
Target: no errors and p95 under 300 ms for pages at 50 users.

--soak-minutes M runs the N-user load for M minutes instead and samples every 30 s the RSS and
open file descriptors of gunicorn (master + workers), of the qcluster processes and of their
engine children (from /proc), and the files in the app's TMPDIR and engine working folders;
prints the table, the growth from the first sample after a minute's warm-up to the last, and a
verdict (RSS growth at most 20 %, descriptors and temporary files flat).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
USERS_SCRIPT = REPO / "bench" / "load_users.py"
PASSWORD = "load-bench-password-42"
TEAMS = 5
FAILED_PER_USER = 2
PAGE_P95_TARGET_MS = 300.0
SAMPLE_SECONDS = 30.0
WARM_UP_SECONDS = 60.0
RSS_GROWTH_LIMIT = 0.20
PORTS = range(8700, 8800)
# The new-analysis form as a person fills it in (the smoke test's values).
FORM_PARAMS = {
    "method": "gradcam",
    "pooling": "global",
    "bbox_mode": "otsu",
    "bbox_threshold": "0.5",
    "colormap": "jet",
    "alpha": "0.3",
    "frame_stride": "2",
    "frame_offset": "1",
    "resize_mode": "stretch",
    "scaling": "auto",
}


# --------------------------------------------------------------------------- seeding (child process)
def _seed_child(*, out: Path, users: int, per_user: int) -> None:
    """Migrate, seed, and write what the simulated users need to `out` (JSON)."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gradcam_site.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.files import File
    from django.core.management import call_command

    from accounts.models import Team, TeamMembership
    from analyses.library import services as library_services
    from analyses.models import Analysis, Classifier, Video
    from analyses.runs.execution import analysis_run
    from analyses.runs.services import analysis_create
    from tests.demo_cache import build_demo, demo_cache_dir

    call_command("migrate", verbosity=0)
    demo_dir = demo_cache_dir()
    build_demo(out_dir=demo_dir)  # reused when an unchanged build exists (the tests make one)
    demo = json.loads((demo_dir / "demo.json").read_text(encoding="utf-8"))
    media = Path(settings.MEDIA_ROOT)

    user_model = get_user_model()
    hashed = make_password(PASSWORD)  # hashed once: 50 PBKDF2 runs would only slow the seeding
    user_model.objects.bulk_create(
        [
            user_model(username=f"load_{index:03d}", email=f"load{index}@example.org", password=hashed)
            for index in range(users)
        ]
    )
    people = list(user_model.objects.filter(username__startswith="load_").order_by("username"))
    team_count = min(TEAMS, len(people))  # a short run may have fewer users than teams
    teams = [
        Team.objects.create(name=f"Load team {index}", created_by=people[index])
        for index in range(team_count)
    ]
    TeamMembership.objects.bulk_create(
        [
            TeamMembership(
                team=teams[index % team_count], user=person, role="owner" if index < team_count else "member"
            )
            for index, person in enumerate(people)
        ]
    )

    # The real thing once: upload, inspect, probe, transcode, analyse (engine children).
    first = people[0]
    classmap = demo_dir / str(demo.get("classmap") or "classmap.txt")
    with (demo_dir / str(demo["model"])).open("rb") as handle:
        classifier = library_services.classifier_create(
            owner=first,
            team=None,
            uploaded_file=File(handle, name=Path(str(demo["model"])).name),
            name="Load demo C3D",
            class_map_text=classmap.read_text(encoding="utf-8") if classmap.is_file() else "",
        )
    library_services.classifier_process(classifier_id=classifier.pk)
    entry = next(v for v in demo["videos"] if v["labelled_class"] != v["true_class"])
    with (demo_dir / str(entry["path"])).open("rb") as handle:
        video = library_services.video_create(
            owner=first,
            team=None,
            uploaded_file=File(handle, name=Path(str(entry["path"])).name),
            name="load clip",
            expected_class=int(entry["labelled_class"]),
        )
    library_services.video_process(video_id=video.pk)
    classifier.refresh_from_db()
    video.refresh_from_db()
    if not (classifier.is_ready and video.is_ready):
        raise SystemExit(f"seeding: uploads refused: {classifier.status_message} {video.status_message}")
    original = analysis_create(
        user=first,
        classifier=classifier,
        video=video,
        expected_class=video.expected_class,
        params={},
        title="load_000 original",
    )
    if analysis_run(analysis_id=original.pk) != "succeeded":
        original.refresh_from_db()
        raise SystemExit(f"seeding: the demo analysis failed: {original.error_message}")
    original.refresh_from_db()

    def linked(name: str) -> str:
        """A new name for a hard link of a stored file: each row owns its own path, as uploads do."""
        if not name:
            return name
        source = Path(name)
        target = str(source.parent / f"{uuid.uuid4().hex}{source.suffix}")
        os.link(media / name, media / target)
        return target

    rows: list[Any] = []
    accounts: list[dict[str, Any]] = []
    for index, person in enumerate(people):
        team = teams[index % team_count]
        if index == 0:
            own_classifier, own_video = classifier, video
        else:
            own_classifier = Classifier.objects.get(pk=classifier.pk)
            own_classifier.pk = None
            own_classifier.code = uuid.uuid4()
            own_classifier.owner = person
            own_classifier.file.name = linked(classifier.file.name)
            own_classifier.save()
            own_video = Video.objects.get(pk=video.pk)
            own_video.pk = None
            own_video.code = uuid.uuid4()
            own_video.owner = person
            for field in ("file", "rendition", "poster"):
                getattr(own_video, field).name = linked(getattr(video, field).name)
            own_video.save()
        codes = [str(original.code)] if index == 0 else []
        for number in range(per_user - len(codes)):
            copy = Analysis.objects.get(pk=original.pk)
            copy.pk = None
            copy.code = uuid.uuid4()
            copy.owner = person
            copy.team = team if number % 2 else None
            copy.classifier, copy.video = own_classifier, own_video
            copy.title = f"{person.username} run {number}"
            copy.task_id = copy.worker_lease = ""
            copy.results_dir = f"analyses/{copy.code.hex}/attempt-1"
            shutil.copytree(media / original.results_dir, media / copy.results_dir, copy_function=os.link)
            rows.append(copy)
            codes.append(str(copy.code))
        for number in range(FAILED_PER_USER):
            failed = Analysis.objects.get(pk=original.pk)
            failed.pk = None
            failed.code = uuid.uuid4()
            failed.owner, failed.team = person, team
            failed.classifier, failed.video = own_classifier, own_video
            failed.title = f"{person.username} failed {number}"
            failed.status, failed.stage, failed.progress = "failed", "failed", 0.4
            failed.error_message = "Seeded failure (the engine ran out of memory)."
            failed.predicted_class, failed.predictions, failed.confidence, failed.is_correct = (
                None,
                {},
                None,
                None,
            )
            failed.manifest, failed.results_dir, failed.results_bytes = {}, "", 0
            failed.task_id = failed.worker_lease = ""
            rows.append(failed)
        accounts.append(
            {
                "username": person.username,
                "results": codes,
                "classifier": str(own_classifier.code),
                "video": str(own_video.code),
            }
        )
    Analysis.objects.bulk_create(rows, batch_size=500)

    files = [record["path"] for record in original.manifest.get("files") or [] if isinstance(record, dict)]
    images = [name for name in files if name.endswith(".png")]
    results = media / original.results_dir
    videos = [
        {"name": name, "size": (results / name).stat().st_size} for name in files if name.endswith(".mp4")
    ]
    if not images or not videos:
        raise SystemExit(f"seeding: the demo analysis lists no heatmap images or videos: {files[:20]}")
    out.write_text(
        json.dumps(
            {
                "password": PASSWORD,
                "users": accounts,
                "images": images,
                "videos": videos,
                "expected_class": video.expected_class,
                "params": FORM_PARAMS,
                "result_files": len(files),
                "analyses": Analysis.objects.count(),
            }
        ),
        encoding="utf-8",
    )


def _report_child() -> None:
    """The analyses the simulated users submitted, by status (one JSON line)."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gradcam_site.settings")
    import django

    django.setup()
    from django.db.models import Count

    from analyses.models import Analysis

    counts = Analysis.objects.filter(title__startswith="load load_").values("status").annotate(n=Count("id"))
    print(json.dumps({row["status"]: row["n"] for row in counts}))


# --------------------------------------------------------------------------- processes
def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _child(arguments: list[str], *, env: dict[str, str], timeout: float) -> str:
    completed = subprocess.run(
        [sys.executable, __file__, *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise SystemExit(f"{arguments[0]} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
    return completed.stdout


def _start(command: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        # Its own process group, so that stopping it stops its workers and engine children too.
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    for signum, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for_server(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/accounts/login/", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"gunicorn did not answer within 60 s:\n{log.read_text()[-3000:]}")


def _users(
    base: str,
    *,
    seed: Path,
    users: int,
    seconds: float,
    submit_every: float,
    out: Path,
    env: dict[str, str],
    think: str = "1,3",
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            str(USERS_SCRIPT),
            "--host",
            base,
            "--seed",
            str(seed),
            "--users",
            str(users),
            "--seconds",
            str(seconds),
            "--submit-every",
            str(submit_every),
            "--think",
            think,
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(out.parent / f"{out.stem}.log").open("wb"),
    )


def _finish_users(process: subprocess.Popen[bytes], *, out: Path, timeout: float) -> dict[str, Any]:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise SystemExit("the load generator did not finish in time") from None
    if process.returncode != 0 or not out.is_file():
        log = out.parent / f"{out.stem}.log"
        raise SystemExit(f"the load generator failed ({process.returncode}):\n{log.read_text()[-4000:]}")
    return dict(json.loads(out.read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- /proc sampling
def _parent_of() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command name may hold spaces and parentheses: the fields after the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    return parents


def _tree(root: int, parents: dict[int, int]) -> list[int]:
    found, frontier = [root], [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def _cpu_seconds(root: int) -> float:
    """CPU time (user + system) of a process tree, its reaped children included (cutime, cstime)."""
    ticks = 0
    for pid in _tree(root, _parent_of()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _measure(pids: list[int]) -> dict[str, int]:
    rss_kb = fds = alive = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kb += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            fds += len(os.listdir(f"/proc/{pid}/fd"))
            alive += 1
        except (OSError, StopIteration):
            continue  # exited between the listing and the reading
    return {"rss_mb": rss_kb // 1024, "fds": fds, "processes": alive}


def _files_under(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if not path.is_dir()) if folder.is_dir() else 0


def _sample(*, web: int, cluster: int, tmp: Path, work: Path, started: float) -> dict[str, Any]:
    parents = _parent_of()
    cluster_pids = _tree(cluster, parents)

    def is_qcluster(pid: int) -> bool:
        try:
            return b"qcluster" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    # The qcluster's own processes (forked: same command line) apart from the engine children
    # they exec (bwrap + python -m gradcam3d, big and short-lived by design).
    qcluster = [pid for pid in cluster_pids if is_qcluster(pid)]
    engine = [pid for pid in cluster_pids if pid not in qcluster]
    return {
        "t": time.monotonic() - started,
        "load1": os.getloadavg()[0],
        "web": _measure(_tree(web, parents)),
        "qcluster": _measure(qcluster),
        "engine": _measure(engine),
        "tmp_files": _files_under(tmp),
        "work_entries": len(list(work.iterdir())) if work.is_dir() else 0,
    }


def _soak_report(samples: list[dict[str, Any]]) -> None:
    print("\nsoak samples (RSS in MB, fds = open file descriptors summed over the group's processes)")
    print(
        f"  {'t (s)':>6} {'load1':>5} | {'web rss':>7} {'fds':>4} {'procs':>5} | {'qcl rss':>7} {'fds':>4} "
        f"{'procs':>5} | {'eng rss':>7} {'fds':>4} {'procs':>5} | {'tmp files':>9} {'work dirs':>9}"
    )
    for s in samples:
        print(
            f"  {s['t']:6.0f} {s['load1']:5.2f} | {s['web']['rss_mb']:7d} {s['web']['fds']:4d} "
            f"{s['web']['processes']:5d} | {s['qcluster']['rss_mb']:7d} {s['qcluster']['fds']:4d} "
            f"{s['qcluster']['processes']:5d} | {s['engine']['rss_mb']:7d} {s['engine']['fds']:4d} "
            f"{s['engine']['processes']:5d} | {s['tmp_files']:9d} {s['work_entries']:9d}"
        )
    reference = next((s for s in samples if s["t"] >= WARM_UP_SECONDS), samples[0])
    last = samples[-1]
    verdicts = []
    print(f"growth from t={reference['t']:.0f} s (after warm-up) to t={last['t']:.0f} s:")
    for group in ("web", "qcluster"):
        before, after = reference[group], last[group]
        growth = (after["rss_mb"] - before["rss_mb"]) / max(before["rss_mb"], 1)
        peak = max(s[group]["rss_mb"] for s in samples if s["t"] >= reference["t"])
        fd_slack = max(5, before["fds"] // 10)
        rss_ok, fds_ok = growth <= RSS_GROWTH_LIMIT, after["fds"] <= before["fds"] + fd_slack
        verdicts += [rss_ok, fds_ok]
        print(
            f"  {group:<8} RSS {before['rss_mb']} -> {after['rss_mb']} MB ({growth:+.1%}, peak {peak} MB): "
            f"{'ok' if rss_ok else 'GROWS'}; fds {before['fds']} -> {after['fds']}: "
            f"{'flat' if fds_ok else 'GROWS'}"
        )
    engine_peak = max(s["engine"]["rss_mb"] for s in samples)
    print(f"  engine   children come and go with analyses (peak {engine_peak} MB): not judged")
    tmp_ok = last["tmp_files"] <= reference["tmp_files"] + 2
    work_ok = last["work_entries"] <= reference["work_entries"] + 2
    verdicts += [tmp_ok, work_ok]
    print(
        f"  temp files {reference['tmp_files']} -> {last['tmp_files']}: {'flat' if tmp_ok else 'GROWS'}; "
        f"engine working folders {reference['work_entries']} -> {last['work_entries']}: "
        f"{'flat' if work_ok else 'GROWS'}"
    )
    print(f"soak verdict: {'PASS' if all(verdicts) else 'FAIL'}")


# --------------------------------------------------------------------------- report
def _print_figures(title: str, figures: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    total = figures["total"]
    print(f"\n{title}: {figures['seconds']:.0f} s measured")
    print(
        f"  {'request':<34} {'count':>6} {'fail':>5} {'req/s':>6} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}"
        + ("   p95 vs 1 user" if baseline else "")
    )

    def line(name: str, row: dict[str, Any], base: dict[str, Any] | None) -> None:
        ratio = f"   {row['p95'] / max(base['p95'], 1):5.1f}x" if base and base.get("requests") else ""
        print(
            f"  {name:<34} {row['requests']:6d} {row['failures']:5d} {row['requests'] / figures['seconds']:6.1f} "
            f"{row['p50']:6.0f} {row['p95']:6.0f} {row['p99']:6.0f} {row['max']:6.0f}{ratio}"
        )

    for name, row in figures["by_name"].items():
        if row["requests"]:
            line(name, row, (baseline or {}).get("by_name", {}).get(name))
    line("ALL HTML PAGES", figures["pages"], (baseline or {}).get("pages"))
    line("ALL REQUESTS", total, (baseline or {}).get("total"))
    for name, row in figures.get("login", {}).items():
        print(
            f"  log-in phase: {name:<20} {row['requests']:4d} requests, p50 {row['p50']:.0f} ms, "
            f"p95 {row['p95']:.0f} ms, max {row['max']:.0f} ms"
        )
    if figures.get("login_phase_failures"):
        print(f"  failures during log-in and warm-up: {figures['login_phase_failures']}")
    for error in figures["errors"]:
        print(f"  ERROR {error['count']} x {error['method']} {error['name']}: {error['error'][:200]}")


# --------------------------------------------------------------------------- PostgreSQL
def _postgres_database(url: str) -> tuple[str, str]:
    """A fresh database beside the one `url` names: (its URL, its name), dropped by the caller."""
    import psycopg

    name = f"gradcam_load_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _postgres_drop(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=50, help="concurrent simulated users")
    parser.add_argument("--seconds", type=float, default=150.0, help="measured seconds at N users")
    parser.add_argument("--baseline-seconds", type=float, default=30.0, help="measured seconds at 1 user")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="soak instead: N users this long")
    parser.add_argument("--per-user", type=int, default=8, help="finished analyses seeded per user")
    parser.add_argument(
        "--submit-every", type=float, default=20.0, help="one analysis submitted per this many s"
    )
    parser.add_argument("--web-workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=4, help="gthread threads per web worker")
    parser.add_argument("--q-workers", type=int, default=1, help="django-q2 workers in the cluster")
    parser.add_argument(
        "--database-url", default="", help="PostgreSQL server to create a throwaway database on"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, database)")
    parser.add_argument("--seed-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--report-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_child:
        _seed_child(
            out=Path(args.seed_child[0]), users=int(args.seed_child[1]), per_user=int(args.seed_child[2])
        )
        return
    if args.report_child:
        _report_child()
        return

    scratch = Path(tempfile.mkdtemp(prefix="gradcam-load-"))
    (scratch / "tmp").mkdir()
    postgres: tuple[str, str] | None = None
    if args.database_url:
        postgres = _postgres_database(args.database_url)
    database_url = postgres[0] if postgres else f"sqlite:///{scratch / 'db.sqlite3'}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gradcam_site.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        # Plain HTTP on loopback: only the HTTPS-only defaults are switched off, by name.
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(scratch / "media"),
        "GRADCAM_VAR_DIR": str(scratch / "var"),
        "STATIC_ROOT": str(scratch / "static"),
        # The app's own temporary files land here, where the soak counts them.
        "TMPDIR": str(scratch / "tmp"),
        "GRADCAM_WORKERS": str(args.q_workers),
        "LOG_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for unset in (
        "MEDIA_BUCKET",
        "REDIS_URL",
        "MEDIA_DELIVERY",
        "GRADCAM_SANDBOX",
        "GRADCAM_ALLOW_DEV_SECRET",
    ):
        env.pop(unset, None)
    seed = scratch / "seed.json"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        # The demo build the test sessions share (keyed by the real temporary folder, not TMPDIR).
        sys.path.insert(0, str(REPO))
        from tests.demo_cache import demo_cache_dir

        seed_env = {**env, "GRADCAM_TEST_DEMO_DIR": str(demo_cache_dir())}
        _child(["--seed-child", str(seed), str(args.users), str(args.per_user)], env=seed_env, timeout=1800)
        seeded = json.loads(seed.read_text())
        print(
            f"seeded in {time.monotonic() - started:.0f} s: {len(seeded['users'])} users, "
            f"{seeded['analyses']} analyses ({args.per_user} finished per user, {seeded['result_files']} "
            f"result files each), database {database_url.split(':')[0]}"
        )
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        web_log, cluster_log = scratch / "gunicorn.log", scratch / "qcluster.log"
        web = _start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "gradcam_site.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.web_workers),
                "--worker-class",
                "gthread",
                "--threads",
                str(args.threads),
                "--timeout",
                "60",
                # Longer than a user's thinking (at most 3 s): gunicorn's default of 2 s closes
                # idle connections just as users send their next request on them (connection
                # resets). In production nginx holds the browsers' connections instead.
                "--keep-alive",
                "10",
            ],
            env=env,
            log=web_log,
        )
        processes.append(web)
        cluster = _start([sys.executable, str(REPO / "manage.py"), "qcluster"], env=env, log=cluster_log)
        processes.append(cluster)
        _wait_for_server(base, web, web_log)
        print(
            f"gunicorn: {args.web_workers} gthread workers x {args.threads} threads on {base}; "
            f"qcluster: {args.q_workers} worker(s); one analysis submitted per {args.submit_every:.0f} s; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
        )

        if args.soak_minutes:
            seconds = args.soak_minutes * 60
            out = scratch / "soak.json"
            generator = _users(
                base,
                seed=seed,
                users=args.users,
                seconds=seconds,
                submit_every=args.submit_every,
                out=out,
                env=env,
            )
            soak_started = time.monotonic()
            cpu_before = (_cpu_seconds(web.pid), soak_started)
            samples = []
            while generator.poll() is None:
                samples.append(
                    _sample(
                        web=web.pid,
                        cluster=cluster.pid,
                        tmp=scratch / "tmp",
                        work=scratch / "media" / "analyses" / ".work",
                        started=soak_started,
                    )
                )
                print(
                    f"  t={samples[-1]['t']:4.0f} s web {samples[-1]['web']['rss_mb']} MB / "
                    f"{samples[-1]['web']['fds']} fds, qcluster {samples[-1]['qcluster']['rss_mb']} MB / "
                    f"{samples[-1]['qcluster']['fds']} fds, load {samples[-1]['load1']:.2f}",
                    flush=True,
                )
                for _ in range(int(SAMPLE_SECONDS * 10)):
                    if generator.poll() is not None:
                        break
                    time.sleep(0.1)
            figures = _finish_users(generator, out=out, timeout=60)
            _print_figures(f"soak, {args.users} users", figures, None)
            _soak_report(samples)
        else:
            baseline = None
            if args.baseline_seconds > 0:
                out = scratch / "baseline.json"
                generator = _users(
                    base,
                    seed=seed,
                    users=1,
                    seconds=args.baseline_seconds,
                    submit_every=args.submit_every,
                    out=out,
                    env=env,
                    # One user clicking without thinking: the same requests, never two at once,
                    # and enough of them in half a minute for percentiles.
                    think="0.1,0.3",
                )
                baseline = _finish_users(generator, out=out, timeout=args.baseline_seconds + 200)
                _print_figures("baseline, 1 user", baseline, None)
            out = scratch / "load.json"
            cpu_before = (_cpu_seconds(web.pid), time.monotonic())
            generator = _users(
                base,
                seed=seed,
                users=args.users,
                seconds=args.seconds,
                submit_every=args.submit_every,
                out=out,
                env=env,
            )
            figures = _finish_users(generator, out=out, timeout=args.seconds + 200)
            _print_figures(f"{args.users} users", figures, baseline)
        # Server CPU per request does not depend on what else the machine runs (wall times do):
        # 2 cores / this = the request rate this machine could serve with nothing else running.
        # (Not the worker cluster's: its engine children run under bwrap, which forks away and
        # is reaped by init, so their CPU time never reaches the cluster's tree.)
        web_cpu = _cpu_seconds(web.pid) - cpu_before[0]
        wall = time.monotonic() - cpu_before[1]
        per_request_ms = 1000 * web_cpu / max(figures["all_requests"], 1)
        print(
            f"\nserver CPU over {wall:.0f} s (log-ins and warm-up included): gunicorn {web_cpu:.0f} s "
            f"({web_cpu / wall:.2f} cores, {per_request_ms:.1f} ms per request over "
            f"{figures['all_requests']} requests)"
        )
        pages_p95 = figures["pages"]["p95"]
        errors = figures["total"]["failures"] + figures.get("login_phase_failures", 0)
        print(
            f"\nthroughput {figures['total']['requests'] / figures['seconds']:.1f} req/s; pages p95 {pages_p95:.0f} ms "
            f"(target < {PAGE_P95_TARGET_MS:.0f}); errors {errors}: "
            f"{'ok' if pages_p95 < PAGE_P95_TARGET_MS and errors == 0 else 'MISSES THE TARGET'}; "
            f"load average now {' '.join(f'{value:.2f}' for value in os.getloadavg())}"
        )
        submitted = json.loads(_child(["--report-child"], env=env, timeout=120).strip().splitlines()[-1])
        print(f"analyses the users submitted, by status at the end: {submitted or 'none'}")
    finally:
        for process in reversed(processes):
            _stop(process)
        if postgres:
            _postgres_drop(args.database_url, postgres[1])
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
