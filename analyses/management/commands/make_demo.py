"""`manage.py make_demo`: train the offline demo classifier, write sample videos, register them.

The demo builder (`python -m demo`, in a sandboxed child process like the engine's) generates a synthetic action
dataset, trains a small Conv3D classifier, and writes the model, its class map and sample videos
plus `demo.json` into <GRADCAM_VAR_DIR>/demo. This command then creates the user "demo" and
registers the model and videos for it through the same services as the upload pages, so
everything is inspected, probed and transcoded exactly like a user upload. Running it again
reuses the trained model (the engine keeps it) and recognises the duplicates, so it is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analyses.library import services as library_services
from analyses.management.sandbox_required import require_sandbox_for_command
from analyses.models import Classifier, Video
from analyses.worker import engine_client

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password-3d"
DEMO_EMAIL = "demo@example.org"
DEMO_TRAINING_TIMEOUT_SECONDS = 1800.0
DEMO_MANIFEST = "demo.json"


def _resolve(path: str, *, base: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else base / candidate


class Command(BaseCommand):
    help = "Train the demo Conv3D classifier, write sample videos and register them for user 'demo'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", default=None, help="Output folder (default: <GRADCAM_VAR_DIR>/demo)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--rebuild", action="store_true", help="Train again even if a complete demo exists"
        )
        parser.add_argument("--timeout", type=float, default=DEMO_TRAINING_TIMEOUT_SECONDS)

    def handle(self, *args: Any, **options: Any) -> None:
        require_sandbox_for_command()
        out_dir = Path(options["out"] or Path(settings.VAR_DIR) / "demo").resolve()
        manifest = self._build_or_reuse(
            out_dir=out_dir, seed=options["seed"], rebuild=options["rebuild"], timeout=options["timeout"]
        )
        user = self._demo_user()
        classifier = self._register_classifier(user=user, manifest=manifest, base=out_dir)
        videos = [
            self._register_video(user=user, entry=entry, base=out_dir) for entry in manifest.get("videos", [])
        ]
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: classifier “{classifier.name}” ({classifier.num_classes} classes) "
                f"and {len(videos)} videos."
            )
        )
        self.stdout.write(f"Log in as: username {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}")

    # ------------------------------------------------------------------ steps
    def _build_or_reuse(self, *, out_dir: Path, seed: int, rebuild: bool, timeout: float) -> dict[str, Any]:
        # The engine reuses a complete demo of the same version and seed by itself.
        self.stdout.write(f"Building the demo in {out_dir} (training takes a minute or two the first time)…")
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = engine_client.make_demo(
                out_dir=out_dir, seed=seed, force=rebuild, timeout_seconds=timeout
            )
        except engine_client.EngineError as exc:
            raise CommandError(exc.message) from exc
        if result.get("model") and result.get("videos") is not None:
            return result
        manifest_path = out_dir / DEMO_MANIFEST
        if manifest_path.is_file():
            return json.loads(manifest_path.read_text(encoding="utf-8"))
        raise CommandError("The demo builder did not report its model and videos.")

    def _demo_user(self) -> Any:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": DEMO_EMAIL}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            self.stdout.write(f"Created user {DEMO_USERNAME!r}.")
        return user

    def _register_classifier(self, *, user: Any, manifest: dict[str, Any], base: Path) -> Classifier:
        model_path = _resolve(str(manifest["model"]), base=base)
        classmap_text = ""
        if manifest.get("classmap"):
            classmap_path = _resolve(str(manifest["classmap"]), base=base)
            if classmap_path.is_file():
                classmap_text = classmap_path.read_text(encoding="utf-8")
        return self._register(
            path=model_path,
            kind="Classifier",
            refused="The demo model was refused",
            create=lambda file: library_services.classifier_create(
                owner=user,
                team=None,
                uploaded_file=file,
                name="Demo shapes C3D",
                description="Small C3D-style classifier trained on synthetic moving-shape clips.",
                class_map_text=classmap_text,
            ),
        )

    def _register_video(self, *, user: Any, entry: dict[str, Any], base: Path) -> Video:
        video_path = _resolve(str(entry["path"]), base=base)
        labelled = entry.get("labelled_class", entry.get("true_class"))
        return self._register(
            path=video_path,
            kind="Video",
            refused=f"The demo video {video_path.name} was refused",
            create=lambda file: library_services.video_create(
                owner=user,
                team=None,
                uploaded_file=file,
                name=str(entry.get("name") or video_path.stem),
                description=str(entry.get("description") or ""),
                expected_class=int(labelled) if labelled is not None else None,
            ),
        )

    def _register(self, *, path: Path, kind: str, refused: str, create: Callable[[File], Any]) -> Any:
        """Upload one demo file through the library service and process it here, as a worker
        would (this command may wait; a web request does not); an earlier run's copy is reused."""
        with path.open("rb") as handle:
            try:
                obj = create(File(handle, name=path.name))
                self.stdout.write(f"Registered {kind.lower()} {obj.name!r}.")
            except library_services.DuplicateUpload as duplicate:
                obj = duplicate.existing
                self.stdout.write(f"{kind} {obj.name!r} already registered.")
            except library_services.LibraryError as exc:
                raise CommandError(f"{refused}: {exc.message}") from exc
        if obj.is_processing:
            # Its queued task finds the job done and skips it.
            process = (
                library_services.classifier_process
                if isinstance(obj, Classifier)
                else library_services.video_process
            )
            process(**{f"{obj._meta.model_name}_id": obj.pk})
            obj.refresh_from_db()
        if not obj.is_ready:
            raise CommandError(
                f"{refused}: {obj.status_message or 'it is still being processed by a worker'}"
            )
        return obj
