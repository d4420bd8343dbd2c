"""Rows for the history tests and the history benchmark: classifiers, videos and analyses made
directly with the ORM (no files, no engine: the history only reads rows).

`history_world` builds a small, fully known world for the three personas; `bulk_history`
adds thousands of analyses for many users with a few bulk inserts.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

METHODS = ("gradcam", "gradcam++", "layercam", "hirescam")
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "queued", "running", "cancelled")
BASE_DATE = datetime(2026, 3, 1, 12, 0, 0)


def make_classifier(*, owner: Any, name: str, labels: list[str], team: Any = None) -> Any:
    from analyses.models import Classifier

    return Classifier.objects.create(
        owner=owner,
        team=team,
        name=name,
        file=f"classifiers/{uuid.uuid4().hex}.keras",
        original_filename=f"{name}.keras",
        file_format="keras",
        sha256=uuid.uuid4().hex * 2,
        size_bytes=1000,
        input_shape=[8, 32, 32, 3],
        num_classes=len(labels),
        conv3d_layers=["conv3d"],
        class_labels=labels,
        status="ready",
    )


def make_video(*, owner: Any, name: str, team: Any = None, expected_class: int | None = None) -> Any:
    from analyses.models import Video

    return Video.objects.create(
        owner=owner,
        team=team,
        name=name,
        file=f"videos/{uuid.uuid4().hex}.mp4",
        original_filename=f"{name}.mp4",
        sha256=uuid.uuid4().hex * 2,
        size_bytes=1000,
        width=64,
        height=48,
        fps=25.0,
        duration_seconds=1.0,
        frame_count=25,
        expected_class=expected_class,
        status="ready",
    )


def analysis_row(
    *,
    owner: Any,
    classifier: Any,
    video: Any,
    title: str,
    team: Any = None,
    status: str = "succeeded",
    method: str = "gradcam",
    predicted: int | None = None,
    expected: int | None = None,
    confidence: float | None = None,
    created_at: datetime | None = None,
) -> Any:
    """An unsaved Analysis as state.analysis_publish leaves it (confidence, is_correct set)."""
    from django.utils import timezone

    from analyses.models import Analysis

    succeeded = status == "succeeded" and predicted is not None
    probabilities: list[float] = []
    if succeeded:
        probabilities = [0.0] * max(classifier.num_classes, predicted + 1)
        probabilities[predicted] = confidence if confidence is not None else 0.5
    return Analysis(
        owner=owner,
        team=team,
        classifier=classifier,
        video=video,
        title=title,
        expected_class=expected,
        params={"method": method},
        method=method,
        status=status,
        stage="done" if status == "succeeded" else status,
        progress=1.0 if status == "succeeded" else 0.3,
        predicted_class=predicted if succeeded else None,
        predictions={"probabilities": probabilities, "predicted_class": predicted} if succeeded else {},
        confidence=(probabilities[predicted] if succeeded and predicted is not None else None),
        is_correct=(None if not succeeded or expected is None else predicted == expected),
        created_at=timezone.make_aware(created_at or BASE_DATE, timezone.get_current_timezone()),
    )


def save_rows(rows: list[Any]) -> list[Any]:
    """Bulk insert, then set created_at (auto_now_add overrides it on insert) in one UPDATE per
    distinct date."""
    from django.db.models import Case, DateTimeField, Value, When

    from analyses.models import Analysis

    wanted = {row.code: row.created_at for row in rows}
    Analysis.objects.bulk_create(rows, batch_size=500)
    codes = list(wanted)
    for start in range(0, len(codes), 500):
        chunk = codes[start : start + 500]
        Analysis.objects.filter(code__in=chunk).update(
            created_at=Case(
                *[When(code=code, then=Value(wanted[code])) for code in chunk], output_field=DateTimeField()
            )
        )
    return list(Analysis.objects.filter(code__in=codes))


def history_world(*, owner: Any, member: Any, stranger: Any, team: Any) -> dict[str, Any]:
    """A known world; every analysis title says who sees it.

    owner:    "Kinetics" (team, labels walking/running/jumping), "Pets" (private, cat/dog),
              videos "street" (team, expected 0) and "garden" (private)
    member:   "MemberNet" (team, labels alpha/beta), video "lab" (team)
    stranger: "Secret" (labels hidden), video "backyard"
    """
    kinetics = make_classifier(
        owner=owner, name="Kinetics", labels=["walking", "running", "jumping"], team=team
    )
    pets = make_classifier(owner=owner, name="Pets", labels=["cat", "dog"])
    member_net = make_classifier(owner=member, name="MemberNet", labels=["alpha", "beta"], team=team)
    secret = make_classifier(owner=stranger, name="Secret", labels=["hidden"])
    street = make_video(owner=owner, name="street", team=team, expected_class=0)
    garden = make_video(owner=owner, name="garden")
    lab = make_video(owner=member, name="lab", team=team)
    backyard = make_video(owner=stranger, name="backyard")
    day = timedelta(days=1)
    rows = [
        # title, owner, team, classifier, video, status, method, predicted, expected, confidence, day
        ("team-correct-walk", owner, team, kinetics, street, "succeeded", "gradcam", 0, 0, 0.91, 0),
        ("team-wrong-run", owner, team, kinetics, street, "succeeded", "layercam", 1, 0, 0.55, 1),
        ("team-failed", owner, team, kinetics, lab, "failed", "gradcam", None, 2, None, 2),
        ("owner-private-cat", owner, None, pets, garden, "succeeded", "gradcam++", 0, 1, 0.72, 3),
        ("owner-private-queued", owner, None, pets, garden, "queued", "hirescam", None, None, None, 4),
        ("member-shared-beta", member, team, member_net, lab, "succeeded", "gradcam", 1, None, 0.66, 5),
        ("member-shared-jump", member, team, kinetics, lab, "succeeded", "hirescam", 2, 2, 0.99, 6),
        ("stranger-hidden", stranger, None, secret, backyard, "succeeded", "gradcam", 0, 0, 0.8, 7),
    ]
    made = save_rows(
        [
            analysis_row(
                title=title,
                owner=who,
                team=in_team,
                classifier=classifier,
                video=video,
                status=status,
                method=method,
                predicted=predicted,
                expected=expected,
                confidence=confidence,
                created_at=BASE_DATE + offset * day,
            )
            for title, who, in_team, classifier, video, status, method, predicted, expected, confidence, offset in rows
        ]
    )
    return {
        "analyses": {analysis.title: analysis for analysis in made},
        "classifiers": {"kinetics": kinetics, "pets": pets, "member_net": member_net, "secret": secret},
        "videos": {"street": street, "garden": garden, "lab": lab, "backyard": backyard},
    }


def bulk_history(*, total: int, users: int, prefix: str = "bench") -> dict[str, Any]:
    """`users` users in 5 teams, each with a classifier and a video, and `total` analyses spread
    over them, with a few bulk inserts. Returns the users and the first user's team-mates."""
    from django.contrib.auth import get_user_model

    from accounts.models import Team, TeamMembership

    User = get_user_model()
    people = User.objects.bulk_create(
        [
            User(username=f"{prefix}_user_{index:03d}", email=f"{prefix}{index}@example.org")
            for index in range(users)
        ]
    )
    people = list(User.objects.filter(username__startswith=f"{prefix}_user_").order_by("username"))
    teams = [Team.objects.create(name=f"{prefix} team {index}", created_by=people[0]) for index in range(5)]
    TeamMembership.objects.bulk_create(
        [
            TeamMembership(team=teams[index % 5], user=person, role="member")
            for index, person in enumerate(people)
        ]
    )
    team_of = {person.pk: teams[index % 5] for index, person in enumerate(people)}
    labels = ["walking", "running", "jumping", "sitting", "waving"]
    classifiers = [
        make_classifier(owner=person, name=f"model {index}", labels=labels, team=team_of[person.pk])
        for index, person in enumerate(people)
    ]
    videos = [
        make_video(owner=person, name=f"clip {index}", team=team_of[person.pk], expected_class=index % 5)
        for index, person in enumerate(people)
    ]
    counter = itertools.count()
    rows = []
    for number in range(total):
        index = number % users
        person = people[index]
        position = next(counter)
        rows.append(
            analysis_row(
                title=f"{prefix} analysis {number}",
                owner=person,
                team=team_of[person.pk] if number % 3 else None,
                classifier=classifiers[index],
                video=videos[index],
                status=STATUSES[number % len(STATUSES)],
                method=METHODS[number % len(METHODS)],
                predicted=number % 5,
                expected=(number // 5) % 5 if number % 4 else None,
                confidence=((number * 37) % 100) / 100,
                created_at=BASE_DATE + timedelta(minutes=position),
            )
        )
    from analyses.models import Analysis

    Analysis.objects.bulk_create(rows, batch_size=1000)
    return {"users": people, "teams": teams, "classifiers": classifiers, "videos": videos}
