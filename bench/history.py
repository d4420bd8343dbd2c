"""History page benchmark: the median time of /analyses/ at 100 and at 10,000 analyses.

    .venv/bin/python bench/history.py [--runs 15]

Runs on SQLite always, and on PostgreSQL too when DATABASE_URL points at one (each in a
throwaway test database, created and destroyed here). Rows are made as the tests make them
(tests/web/history_factories.bulk_history: 50 users in 5 teams, one classifier and video each);
the pages are requested in-process through Django's test client as the first of those users,
who sees their own analyses and their team's (about a fifth of them). Prints, per database, the
median of the plain history page and of a filtered, sorted and searched one at each size, and
the ratio 10,000 / 100 (target: at most 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SIZES = (100, 10_000)
USERS = 50
TARGET_RATIO = 1.5
PAGES = {
    "plain": "/analyses/",
    "filtered": "/analyses/?status=succeeded&outcome=wrong&q=clip&sort=-confidence",
}


def _median_ms(client: Any, url: str, *, runs: int) -> float:
    for _ in range(3):  # warm-up: templates, query plans, caches
        assert client.get(url).status_code == 200
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return statistics.median(times)


def _child(runs: int) -> dict[str, Any]:
    """Inside one database: build each size, time the pages, report medians (ms)."""
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gradcam_site.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from accounts.models import Team
    from analyses.models import Analysis, Classifier, Video
    from tests.web.history_factories import bulk_history

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        results: dict[str, Any] = {"vendor": connection.vendor}
        for size in SIZES:
            Analysis.objects.all().delete()
            Classifier.objects.all().delete()
            Video.objects.all().delete()
            Team.objects.all().delete()
            made = bulk_history(total=size, users=USERS, prefix=f"s{size}")
            with connection.cursor() as cursor:  # fresh planner statistics, as autovacuum would
                cursor.execute("ANALYZE")
            client = Client()
            client.force_login(made["users"][0])
            results[str(size)] = {name: _median_ms(client, url, runs=runs) for name, url in PAGES.items()}
        return results
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def _run_on(database_url: str, *, runs: int) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": os.environ.get("DEBUG", "1")}
    result = subprocess.run(
        [sys.executable, __file__, "--child", "--runs", str(runs)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"benchmark on {database_url.split(':')[0]} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="timed requests per page (median)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = max(3, min(args.runs, 500))
    if args.child:
        print(json.dumps(_child(runs)))
        return
    backends = {}
    with tempfile.TemporaryDirectory() as folder:
        backends["SQLite"] = _run_on(f"sqlite:///{folder}/bench.sqlite3", runs=runs)
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        backends["PostgreSQL"] = _run_on(database_url, runs=runs)
    else:
        print("PostgreSQL: skipped (DATABASE_URL does not point at PostgreSQL)")
    print(f"history page, median of {runs} requests ({USERS} users; target ratio <= {TARGET_RATIO})")
    for name, result in backends.items():
        for page in PAGES:
            small, large = result[str(SIZES[0])][page], result[str(SIZES[1])][page]
            ratio = large / small
            verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
            print(
                f"  {name:<10} {page:<9} {SIZES[0]:>6} rows: {small:7.1f} ms   {SIZES[1]:>6} rows: {large:7.1f} ms"
                f"   ratio {ratio:4.2f}  {verdict}"
            )


if __name__ == "__main__":
    main()
