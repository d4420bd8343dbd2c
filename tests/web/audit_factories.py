"""A small world for the audit page tests: the three personas' objects and a succeeded analysis
whose results folder holds files listed in its manifest (with their real sha256), made with the
ORM (the audit trail only reads rows; the file views only serve what the manifest lists).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.web.history_factories import make_classifier, make_video

RAW_MAPS_BYTES = b"PK\x03\x04 raw maps of layer conv3d (test bytes)"
IMAGE_BYTES = b"\x89PNG\r\n\x1a\n test heatmap image"


def _record(path: str, role: str, data: bytes, media_type: str) -> dict[str, Any]:
    return {
        "path": path,
        "role": role,
        "layer": "conv3d",
        "frame": 0 if role == "heatmap_image" else None,
        "class": 1,
        "media_type": media_type,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def succeeded_analysis(
    *, owner: Any, team: Any, classifier: Any, video: Any, media_root: Path, title: str
) -> Any:
    """A succeeded analysis with a raw-maps file and a heatmap image in its results folder."""
    from analyses.models import Analysis

    files = [
        _record("conv3d/raw_maps.npz", "raw_maps", RAW_MAPS_BYTES, "application/octet-stream"),
        _record("conv3d/heatmap_000.png", "heatmap_image", IMAGE_BYTES, "image/png"),
    ]
    analysis = Analysis.objects.create(
        owner=owner,
        team=team,
        classifier=classifier,
        video=video,
        title=title,
        expected_class=0,
        params={"method": "gradcam", "layers": ["conv3d"]},
        status="succeeded",
        stage="done",
        progress=1.0,
        predicted_class=1,
        predictions={"predicted_class": 1, "probabilities": [0.3, 0.7]},
        input_hashes={"model": classifier.sha256, "video": video.sha256},
        versions={"gradcam3d": "test"},
    )
    folder = Path("analyses") / analysis.code.hex / "attempt-1"
    root = media_root / folder
    (root / "conv3d").mkdir(parents=True)
    (root / "conv3d" / "raw_maps.npz").write_bytes(RAW_MAPS_BYTES)
    (root / "conv3d" / "heatmap_000.png").write_bytes(IMAGE_BYTES)
    manifest = {"files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    Analysis.objects.filter(pk=analysis.pk).update(results_dir=folder.as_posix(), manifest=manifest)
    analysis.refresh_from_db()
    return analysis


def audit_world(*, owner: Any, member: Any, stranger: Any, team: Any, media_root: Path) -> dict[str, Any]:
    """owner: classifier "Kinetics" and video "street" (team), analysis "team-result" (team);
    member: classifier "MemberNet" (team); stranger: classifier "Secret"."""
    kinetics = make_classifier(owner=owner, name="Kinetics", labels=["walk", "run"], team=team)
    street = make_video(owner=owner, name="street", team=team)
    member_net = make_classifier(owner=member, name="MemberNet", labels=["a", "b"], team=team)
    secret = make_classifier(owner=stranger, name="Secret", labels=["x", "y"])
    analysis = succeeded_analysis(
        owner=owner, team=team, classifier=kinetics, video=street, media_root=media_root, title="team-result"
    )
    return {
        "kinetics": kinetics,
        "street": street,
        "member_net": member_net,
        "secret": secret,
        "analysis": analysis,
    }
