"""Run the django-q2 tasks waiting in the ORM broker, in the test process, as a worker would.

Web tests have no worker cluster: an upload answers at once with a `processing` row and queues
its job. `run_queued_tasks()` takes every queued task from the broker, runs the real task
function (which starts the real sandboxed engine child) and acknowledges it — exactly what a
django-q2 worker does, minus the cluster. Tests can therefore look at the page while the job
waits, then run it, then look again.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string


def queued_task_names() -> list[str]:
    from django_q.models import OrmQ

    return [str(entry.name()) for entry in OrmQ.objects.all()]


def run_queued_tasks(*, limit: int = 100) -> list[Any]:
    """Run queued tasks (including any they queue) until none is left; returns their results."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker()
    results: list[Any] = []
    for _ in range(limit):
        batch = broker.dequeue()
        if not batch:
            return results
        for ack_id, payload in batch:
            task = SignedPackage.loads(payload)
            function = task["func"] if callable(task["func"]) else import_string(task["func"])
            try:
                results.append(function(*task.get("args", ()), **task.get("kwargs", {})))
            finally:
                broker.acknowledge(ack_id)
    raise AssertionError(f"tasks kept queueing tasks after {limit} rounds")
