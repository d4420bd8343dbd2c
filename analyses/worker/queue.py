"""The django-q2 queue as the jobs' owners see it: enqueue a task by its dotted path, and tell
whether a job's task is still waiting in the broker (the reapers re-enqueue lost ones).

Task functions are named by dotted path (`analyses.tasks.*`), never imported here: the queue
stores that path with each queued task, and the modules that enqueue must not import the
modules that run the tasks.
"""

from __future__ import annotations

import logging
import time
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
    _remember_redis_enqueue(task_name=task_name)
    return str(task_id or "")[:64]


Pending = tuple[set[str], set[str]]


def _redis_broker() -> Any | None:
    """django-q2's Redis broker when it is the one in use (django-q2 reads Q_CLUSTER once, at
    import: asking it, not the settings, follows whatever broker its clusters really use)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    if Conf.ORM or not Conf.REDIS:
        return None
    from django_q.brokers.redis_broker import Redis

    broker = get_broker()
    return broker if isinstance(broker, Redis) else None


def _recent_key(broker: Any) -> str:
    return f"{broker.list_key}:gradcam-enqueued"


def _remember_redis_enqueue(*, task_name: str) -> None:
    """With Redis, note when `task_name` was (last) enqueued, in a sorted set next to the queue.

    Why: a cluster's pusher BLPOPs tasks into its local queue (`queue_limit`, plus one in hand)
    while its workers are busy, so a task waiting in a LIVE cluster is in neither the Redis list
    nor started. The reaper cannot tell it from a lost one; it re-enqueues it after the grace,
    which is harmless (`analysis_claim` and the other jobs' claims are compare-and-sets: the
    second copy finds the row taken and is "skipped") but must not pile up. A name enqueued
    less than GRADCAM_HEARTBEAT_STALE_SECONDS ago counts as pending, so each reaper run adds at
    most one copy of a row per grace period, however long a busy cluster holds the first one.
    The set lives in Redis itself: when Redis loses the queue (restart without persistence,
    FLUSHALL) it loses these notes too, and the lost rows are re-enqueued at the next run.
    Client clocks are used for the scores: machines are NTP-synchronised to well under the grace.
    """
    try:
        broker = _redis_broker()
        if broker is not None:
            broker.connection.zadd(_recent_key(broker), {task_name: time.time()})
    except Exception:  # noqa: BLE001 - the task is queued; without the note it is at worst re-enqueued once
        logger.warning("could not note the enqueue of %s in Redis", task_name, exc_info=True)


def _redis_pending(broker: Any) -> Pending:
    """Task ids and names in the Redis list (LRANGE, each payload decoded as django-q2's pusher
    does), plus the names enqueued within the grace (see `_remember_redis_enqueue`)."""
    from django_q.signing import SignedPackage

    recent_key = _recent_key(broker)
    grace = float(settings.GRADCAM_HEARTBEAT_STALE_SECONDS)
    pipeline = broker.connection.pipeline(transaction=False)
    pipeline.lrange(broker.list_key, 0, -1)
    pipeline.zremrangebyscore(recent_key, "-inf", time.time() - grace)
    pipeline.zrange(recent_key, 0, -1)
    payloads, _, recent = pipeline.execute()
    ids: set[str] = set()
    names = {name.decode() if isinstance(name, bytes) else str(name) for name in recent}
    for payload in payloads:
        try:
            task = SignedPackage.loads(payload)
            ids.add(str(task["id"]))
            names.add(str(task["name"]))
        except Exception:  # noqa: BLE001 - undecodable (another SECRET_KEY, not a task): not ours
            continue
    return ids, names


def _orm_pending() -> Pending:
    from django_q.models import OrmQ

    ids: set[str] = set()
    names: set[str] = set()
    for entry in OrmQ.objects.all():
        try:
            ids.add(str(entry.task_id()))
            names.add(str(entry.name()))
        except Exception:  # noqa: BLE001 - an undecodable entry (another SECRET_KEY) is not ours
            continue
    return ids, names


def pending_broker_tasks() -> Pending | None:
    """(task ids, task names) of the tasks the broker still holds for a worker; None when that
    cannot be known now (Redis unreachable: logged) or at all (a broker this project does not
    configure). With None every task counts as pending: nothing is re-enqueued blindly, the
    rows stay queued, and the next reaper run (every minute) looks again.

    ORM broker: the queue rows, including tasks a cluster has taken and not yet acknowledged.
    Redis broker: the list plus the names enqueued within the grace (`_redis_pending`).
    """
    from django_q.conf import Conf

    if Conf.ORM:
        return _orm_pending()
    try:
        broker = _redis_broker()
        return None if broker is None else _redis_pending(broker)
    except Exception:  # noqa: BLE001 - Redis down or restarting: the reaper must carry on
        logger.warning(
            "cannot list the Redis queue now; lost tasks are looked for again later", exc_info=True
        )
        return None


def task_is_pending(*, task_id: str, task_name: str, pending: Pending | None) -> bool:
    """Whether the django-q2 task of a queued row may still reach a worker (see
    `pending_broker_tasks`: when the broker's tasks are unknown, every task may)."""
    if pending is None:
        return True
    ids, names = pending
    return task_id in ids or task_name in names
