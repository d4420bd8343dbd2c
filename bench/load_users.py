"""The simulated users of bench/load.py (locust), and a headless runner that prints JSON figures.

Run by bench/load.py in its own process (locust's gevent monkey-patching stays out of the
bench's process):

    .venv/bin/python bench/load_users.py --host http://127.0.0.1:8731 --seed seed.json \
        --users 50 --seconds 150 --out figures.json

Also a plain locustfile (`locust -f bench/load_users.py`, with LOAD_SEED=seed.json) for looking
at a run in locust's web UI.

Each user logs in through the login form (CSRF token from its cookie) as one of the seeded
accounts, then, with 1-3 s of thinking between actions: browses the history (plain, filtered,
sorted, searched, page 2), opens result pages, polls status JSON, fetches heatmap images,
seeks in a heatmap video with Range requests, and opens the new-analysis form; the form is
also posted (a real analysis, run by the worker cluster) at most once every
`--submit-every` seconds over all users, so the worker's load stays what a team would cause.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import time
from pathlib import Path
from typing import Any, ClassVar

from locust import HttpUser, between, task
from locust.env import Environment
from locust.stats import StatsEntry

SEED_PATH = os.environ.get("LOAD_SEED", "")
FORM_DATA = re.compile(r'<script id="analysis-form-data" type="application/json">(.*?)</script>', re.S)
ANALYSIS_LINK = re.compile(
    r'href="/analyses/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/"'
)
# Request names by kind: "page:" names are the HTML pages the p95 target is about.
PAGE_PREFIX = "page: "


def _load_seed(path: str) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text(encoding="utf-8"))) if path else {}


class StudioUser(HttpUser):
    """One person of a team using the studio in a browser (without static files: a browser has
    them cached after the first page)."""

    wait_time = between(1.0, 3.0)
    seed: ClassVar[dict[str, Any]] = _load_seed(SEED_PATH)
    accounts: ClassVar[itertools.cycle[dict[str, Any]] | None] = None
    submit_every: ClassVar[float] = 20.0
    next_submit: ClassVar[float] = 0.0  # shared by every user (one gevent process)
    logged_in: ClassVar[int] = 0

    def on_start(self) -> None:
        cls = type(self)
        if cls.accounts is None:
            cls.accounts = itertools.cycle(cls.seed["users"])
        self.account = next(cls.accounts)
        self.client.get("/accounts/login/", name="login form")
        with self.client.post(
            "/accounts/login/",
            data={
                "username": self.account["username"],
                "password": self.seed["password"],
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
            },
            headers={"Referer": f"{self.host}/accounts/login/"},
            allow_redirects=False,
            name="login",
            catch_response=True,
        ) as response:
            if response.status_code != 302 or "/accounts/login/" in response.headers.get("Location", ""):
                response.failure(f"log-in refused (HTTP {response.status_code})")
                return
        self.visible: list[str] = list(self.account["results"])
        cls.logged_in += 1

    # ------------------------------------------------------------------ helpers
    def _page(self, url: str, name: str) -> str:
        with self.client.get(url, name=PAGE_PREFIX + name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return ""
            return str(response.text)

    def _result(self) -> str:
        return random.choice(self.account["results"])

    # ------------------------------------------------------------------ tasks
    @task(1)
    def home(self) -> None:
        self._page("/", "home")

    @task(4)
    def history(self) -> None:
        text = self._page("/analyses/", "history")
        # What a browser would click next: any analysis on the page (own or the team's).
        found = ANALYSIS_LINK.findall(text)
        if found:
            self.visible = found

    @task(2)
    def history_filtered(self) -> None:
        query = random.choice(
            [
                "?status=succeeded&sort=-confidence",
                "?q=load&outcome=wrong",
                "?page=2",
                "?status=failed",
                f"?q={self.account['username'][-3:]}&sort=created_at",
            ]
        )
        self._page(f"/analyses/{query}", "history filtered/paged")

    @task(3)
    def result_page(self) -> None:
        self._page(f"/analyses/{random.choice(self.visible)}/", "analysis result")

    @task(3)
    def status_json(self) -> None:
        self.client.get(f"/analyses/{self._result()}/status.json", name="json: status")

    @task(4)
    def heatmap_image(self) -> None:
        name = random.choice(self.seed["images"])
        self.client.get(f"/analyses/{self._result()}/files/{name}", name="image: heatmap")

    @task(2)
    def heatmap_video(self) -> None:
        """Play, then seek three times, as a <video> element does: open-ended Range requests."""
        video = random.choice(self.seed["videos"])
        url = f"/analyses/{self._result()}/files/{video['name']}"
        offsets = [0, *sorted(random.randrange(0, video["size"]) for _ in range(3))]
        for offset in offsets:
            with self.client.get(
                url, headers={"Range": f"bytes={offset}-"}, name="video: range", catch_response=True
            ) as response:
                expected = f"bytes {offset}-{video['size'] - 1}/{video['size']}"
                if response.status_code != 206 or response.headers.get("Content-Range") != expected:
                    response.failure(f"HTTP {response.status_code} {response.headers.get('Content-Range')}")

    @task(1)
    def new_analysis(self) -> None:
        """Open the form; post it when the shared submission slot is free."""
        text = self._page("/analyses/new/", "new analysis form")
        cls = type(self)
        if not text or time.monotonic() < cls.next_submit:
            return
        cls.next_submit = time.monotonic() + cls.submit_every
        match = FORM_DATA.search(text)
        form = json.loads(match.group(1)) if match else {}
        if not form.get("classifiers") or not form.get("videos"):
            return
        with self.client.post(
            "/analyses/new/",
            data={
                "csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""),
                "classifier": self.account["classifier"],
                "video": self.account["video"],
                "expected_class": str(self.seed["expected_class"]),
                "title": f"load {self.account['username']}",
                **self.seed["params"],
                "action": "run",
            },
            headers={"Referer": f"{self.host}/analyses/new/"},
            allow_redirects=False,
            name="submit analysis",
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"HTTP {response.status_code}: {response.text[:300]}")


def _entry(entry: StatsEntry) -> dict[str, Any]:
    return {
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "p50": entry.get_response_time_percentile(0.50),
        "p95": entry.get_response_time_percentile(0.95),
        "p99": entry.get_response_time_percentile(0.99),
        "max": entry.max_response_time,
        "avg": entry.avg_response_time,
    }


def _figures(environment: Environment, *, seconds: float) -> dict[str, Any]:
    stats = environment.stats
    entries = {name: entry for (name, _method), entry in stats.entries.items()}
    # One distribution over every HTML page (merged response-time histograms, not averaged
    # percentiles).
    pages = StatsEntry(stats, "pages", "", use_response_times_cache=False)
    for name, entry in entries.items():
        if name.startswith(PAGE_PREFIX):
            pages.extend(entry)
    return {
        "seconds": seconds,
        "by_name": {name: _entry(entry) for name, entry in sorted(entries.items())},
        "pages": _entry(pages),
        "total": _entry(stats.total),
        "errors": [
            {
                "name": error.name,
                "method": error.method,
                "error": str(error.error),
                "count": error.occurrences,
            }
            for error in stats.errors.values()
        ],
    }


def main() -> None:
    import gevent

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--seed", required=True)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--submit-every", type=float, default=20.0)
    parser.add_argument("--think", default="1,3", help="seconds between a user's actions: min,max")
    parser.add_argument("--warm-up", type=float, default=10.0, help="unmeasured seconds after log-ins")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    low, high = (float(part) for part in args.think.split(","))
    StudioUser.wait_time = between(low, high)
    StudioUser.seed = _load_seed(args.seed)
    StudioUser.submit_every = args.submit_every
    # The first submission waits a little, so it does not land in the log-in rush.
    StudioUser.next_submit = time.monotonic() + min(args.submit_every, 10.0)
    environment = Environment(user_classes=[StudioUser], host=args.host)
    runner = environment.create_local_runner()
    runner.start(args.users, spawn_rate=args.spawn_rate)
    # Log-ins (one PBKDF2 hash each, all at once) are measured apart: the figures are for the
    # steady state after every user is in.
    deadline = time.monotonic() + 120
    while StudioUser.logged_in < args.users and time.monotonic() < deadline:
        gevent.sleep(0.2)
    # Every web worker process serves some requests (imports, templates, first connections)
    # before anything is measured.
    gevent.sleep(args.warm_up)
    login = {
        name: _entry(entry)
        for (name, _method), entry in environment.stats.entries.items()
        if name.startswith("login")
    }
    login_errors = sum(entry.num_failures for entry in environment.stats.entries.values())
    before_measuring = environment.stats.total.num_requests
    environment.stats.reset_all()
    started = time.monotonic()
    gevent.sleep(args.seconds)
    runner.stop()
    figures = _figures(environment, seconds=time.monotonic() - started)
    figures["login"] = login
    figures["login_phase_failures"] = login_errors
    figures["logged_in"] = StudioUser.logged_in
    # Every request the server answered, log-ins and warm-up included (for its CPU per request).
    figures["all_requests"] = before_measuring + figures["total"]["requests"]
    runner.quit()
    Path(args.out).write_text(json.dumps(figures), encoding="utf-8")


if __name__ == "__main__":
    main()
