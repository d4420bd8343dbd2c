"""The django-q2 queue as the jobs' owners see it: enqueue a task by its dotted path, and tell
whether a job's task is still waiting in the broker (the reapers re-enqueue lost ones).

Task functions are named by dotted path (`analyses.tasks.*`), never imported here: the queue
stores that path with each queued task, and the modules that enqueue must not import the
modules that run the tasks.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


def task_enqueue(*, function: str, argument: Any, task_name: str, group: str) -> str | None:
    """Queue `function(argument)`; the task id, or None (logged) when the broker refused it.

    Callers enqueue rows that are already committed, so a broker failure must not fail the
    request: the row stays queued and the reaper queues it again later.
    """
    from django_q.tasks import async_task  # django-q2 imports its cluster machinery: only when used

    try:
        task_id = async_task(function, argument, task_name=task_name, group=group)
    except Exception:  # noqa: BLE001 - see above: the reaper retries
        logger.exception("could not enqueue %s", task_name)
        return None
    return str(task_id or "")[:64]


def pending_broker_tasks() -> tuple[set[str], set[str]] | None:
    """(task ids, task names) waiting in or taken from the ORM broker's queue (until acknowledged,
    after its result is saved); None with another broker, which cannot be listed."""
    from django_q.models import OrmQ

    if not settings.Q_CLUSTER.get("orm"):
        return None
    ids: set[str] = set()
    names: set[str] = set()
    for entry in OrmQ.objects.all():
        try:
            ids.add(str(entry.task_id()))
            names.add(str(entry.name()))
        except Exception:  # noqa: BLE001 - an undecodable entry (another SECRET_KEY) is not ours
            continue
    return ids, names


def task_is_pending(*, task_id: str, task_name: str, pending: tuple[set[str], set[str]] | None) -> bool:
    """Whether the django-q2 task of a queued row is still waiting in the broker."""
    from django_q.models import Task

    if pending is not None:
        ids, names = pending
        return task_id in ids or task_name in names
    # Another broker (Redis): its queue cannot be searched; a task is pending until its result exists.
    return bool(task_id) and not Task.objects.filter(id=task_id).exists()
