"""What the audit page and its CSV export show of each event.

Links to an event's object are made from URL names (reversed, never imported), and only while
the object exists: an object whose deletion was recorded shows its tombstone (the data of its
`*.deleted` event: who deleted what, when, with its hashes) instead of a broken link.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from django.urls import NoReverseMatch, reverse

from audit.models import AuditEvent
from audit.selectors import tombstones_for

# target_type -> the URL name of its page (each takes the object's `code`).
_OBJECT_URL_NAMES = {
    "analysis": "analyses_run:detail",
    "classifier": "library:classifier_detail",
    "video": "library:video_detail",
    "comparison": "analyses_compare:detail",
    "team": "team_detail",
}
CSV_COLUMNS = (
    "time",
    "action",
    "actor",
    "object_owner",
    "team",
    "object_type",
    "object_code",
    "object_deleted",
    "data",
    "event_code",
)
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _object_url(target_type: str, code: uuid.UUID | None) -> str:
    name = _OBJECT_URL_NAMES.get(target_type)
    if name is None or code is None:
        return ""
    try:
        return reverse(name, kwargs={"code": code})
    except NoReverseMatch:  # a kind of object this site has no page for (yet)
        return ""


def flat_items(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """An event's data as (dotted key, text) pairs, nested dicts flattened, lists as JSON."""
    if not isinstance(data, dict):
        return [(prefix or "value", _text(data))]
    items: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            items.extend(flat_items(value, name))
        else:
            items.append((name, _text(value)))
    return items


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def event_rows(events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    """One dict per event for the page (one query for the tombstones, whatever the page size)."""
    events = list(events)
    tombstones = tombstones_for(target_codes=[event.target_code for event in events])
    rows = []
    for event in events:
        tombstone = tombstones.get(event.target_code) if event.target_code else None
        rows.append(
            {
                "event": event,
                "actor_deactivated": event.actor is not None and not event.actor.is_active,
                "team_name": event.team.name if event.team is not None else "",
                "object_url": "" if tombstone else _object_url(event.target_type, event.target_code),
                "tombstone": tombstone,
                "is_tombstone": tombstone is not None and tombstone.pk == event.pk,
                "items": flat_items(event.data),
            }
        )
    return rows


def csv_safe(value: Any) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading quote."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_lines(events: Iterable[AuditEvent], *, chunk: int = 500) -> Iterator[list[str]]:
    """The CSV's rows (header first), its cells made safe; tombstones looked up per chunk."""
    yield list(CSV_COLUMNS)
    batch: list[AuditEvent] = []
    for event in events:
        batch.append(event)
        if len(batch) >= chunk:
            yield from _csv_batch(batch)
            batch = []
    yield from _csv_batch(batch)


def _csv_batch(batch: list[AuditEvent]) -> Iterator[list[str]]:
    tombstones = tombstones_for(target_codes=[event.target_code for event in batch])
    for event in batch:
        yield [
            csv_safe(cell)
            for cell in (
                event.created_at.isoformat(),
                event.action,
                event.actor_username,
                event.subject_owner_username,
                event.team.name if event.team is not None else "",
                event.target_type,
                str(event.target_code or ""),
                "yes" if event.target_code in tombstones else "",
                json.dumps(event.data, sort_keys=True, default=str),
                str(event.code),
            )
        ]
