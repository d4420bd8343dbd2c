"""`manage.py seed_api_examples --demo-dir DIR`: an example database for exercising the REST API.

Made for `.ci/api_fuzz.py` (schemathesis against the live schema), on a throwaway database: two
users, a team, the demo model and a demo video uploaded and processed through the library
services (as `make_demo` does: inspected, probed and transcoded here, as a worker would), a
succeeded analysis with real results (run here by the engine, as a worker would), its share with
the team, a share link and a saved comparison; plus objects made to be deleted (a refused model,
a second video, a cancelled analysis) so that DELETE operations have something to delete without
taking away what the other operations read. Prints one JSON object: the users' credentials (and
an API token when `accounts.ApiToken` exists) and every code, by resource.

DIR is the output of `python -m demo --out DIR` (tests/demo_cache.py keeps one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services as account_services
from accounts.tokens import api_token_create
from analyses.compare.selectors import columns_from_values
from analyses.compare.services import comparison_create
from analyses.library import services as library_services
from analyses.management.sandbox_required import require_sandbox_for_command
from analyses.models import Analysis, Classifier, Video
from analyses.runs import services as run_services
from analyses.runs.execution import analysis_run
from analyses.sharing import services as sharing_services

OWNER, MEMBER = "api_owner", "api_member"
DEFAULT_PASSWORD = "api-examples-password-42"


class Command(BaseCommand):
    help = "Seed an example database for the REST API (two users, a team, a model, a video, an analysis)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo-dir", required=True, help="Output folder of `python -m demo`")
        parser.add_argument("--password", default=DEFAULT_PASSWORD)

    def handle(self, *args: Any, **options: Any) -> None:
        require_sandbox_for_command()
        demo_dir = Path(options["demo_dir"]).resolve()
        manifest_path = demo_dir / "demo.json"
        if not manifest_path.is_file():
            raise CommandError(
                f"{manifest_path} does not exist: build it with `python -m demo --out {demo_dir}`"
            )
        demo = json.loads(manifest_path.read_text(encoding="utf-8"))
        owner = self._user(OWNER, password=options["password"])
        member = self._user(MEMBER, password=options["password"])
        team = account_services.team_create(creator=owner, name="API Lab", description="Seeded for the API")
        account_services.team_member_add(actor=owner, team=team, username=member.username)
        classifier = self._classifier(owner=owner, demo=demo, base=demo_dir)
        videos = sorted(demo["videos"], key=lambda entry: entry["labelled_class"] == entry["true_class"])
        video = self._video(owner=owner, entry=videos[0], base=demo_dir)
        analysis = self._analysis(owner=owner, classifier=classifier, video=video)
        shares = sharing_services.share_create(actor=owner, target=analysis, team=team, with_inputs=True)
        link, link_token = sharing_services.share_link_create(actor=owner, target=analysis, label="seeded")
        last = len(analysis.manifest["model"]["selected_layers"]) - 1
        comparison = comparison_create(
            user=owner,
            title="Seeded: first and last layer",
            # Columns by layer position, as the comparison page's address names them.
            columns=columns_from_values(values=[f"{analysis.code}:0", f"{analysis.code}:{last}"], user=owner),
        )
        disposable = self._disposable(owner=owner, classifier=classifier, entry=videos[-1], base=demo_dir)
        result = {
            "users": {
                "owner": {
                    "username": owner.username,
                    "password": options["password"],
                    "code": str(owner.code),
                },
                "member": {
                    "username": member.username,
                    "password": options["password"],
                    "code": str(member.code),
                },
            },
            "token": self._token(owner),
            "codes": {
                "classifiers": [str(classifier.code)],
                "videos": [str(video.code)],
                "analyses": [str(analysis.code)],
                "teams": [str(team.code)],
                "users": [str(member.code), str(owner.code)],
                "shares": [str(share.code) for share in shares],
                "share-links": [str(link.code)],
                "comparisons": [str(comparison.code)],
                "files": _result_files(analysis),
                "layers": list(classifier.conv3d_layers),
            },
            "disposable": disposable,
            "share_link_token": link_token,
        }
        self.stdout.write(json.dumps(result))

    def _user(self, username: str, *, password: str) -> Any:
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} exists: seed a fresh, empty database.")
        return user_model.objects.create_user(
            username=username, email=f"{username}@example.org", password=password
        )

    def _classifier(self, *, owner: Any, demo: dict[str, Any], base: Path) -> Classifier:
        classmap = base / str(demo.get("classmap") or "classmap.txt")
        with (base / str(demo["model"])).open("rb") as handle:
            classifier = library_services.classifier_create(
                owner=owner,
                team=None,
                uploaded_file=File(handle, name=Path(str(demo["model"])).name),
                name="Seeded demo C3D",
                description="The demo model, seeded for the API.",
                class_map_text=classmap.read_text(encoding="utf-8") if classmap.is_file() else "",
            )
        return self._processed(classifier)

    def _video(self, *, owner: Any, entry: dict[str, Any], base: Path) -> Video:
        path = base / str(entry["path"])
        with path.open("rb") as handle:
            video = library_services.video_create(
                owner=owner,
                team=None,
                uploaded_file=File(handle, name=path.name),
                name=str(entry.get("name") or path.stem),
                expected_class=int(entry["labelled_class"]),
            )
        return self._processed(video)

    def _processed(self, obj: Classifier | Video) -> Any:
        """Process an upload here, as a worker would (its queued task finds the job done)."""
        if isinstance(obj, Classifier):
            library_services.classifier_process(classifier_id=obj.pk)
        else:
            library_services.video_process(video_id=obj.pk)
        obj.refresh_from_db()
        if not obj.is_ready:
            raise CommandError(f"The seeded {obj._meta.model_name} was refused: {obj.status_message}")
        return obj

    def _analysis(self, *, owner: Any, classifier: Classifier, video: Video) -> Analysis:
        analysis = run_services.analysis_create(
            user=owner,
            classifier=classifier,
            video=video,
            expected_class=video.expected_class,
            params={},
            title="Seeded analysis",
        )
        # Run here, as a worker would; the queued task then finds it taken and skips it.
        status = analysis_run(analysis_id=analysis.pk)
        analysis.refresh_from_db()
        if status != "succeeded":
            raise CommandError(f"The seeded analysis ended {status}: {analysis.error_message}")
        return analysis

    def _disposable(
        self, *, owner: Any, classifier: Classifier, entry: dict[str, Any], base: Path
    ) -> dict[str, list[str]]:
        """Objects for DELETE to delete: a refused model, a second video, a cancelled analysis."""
        refused = library_services.classifier_create(
            owner=owner,
            team=None,
            uploaded_file=ContentFile(b"not a Keras model", name="refused.h5"),
            name="Seeded refused model",
        )
        library_services.classifier_process(classifier_id=refused.pk)
        video = self._video(owner=owner, entry=entry, base=base)
        analysis = run_services.analysis_create(
            user=owner, classifier=classifier, video=video, expected_class=None, params={}, title="To delete"
        )
        run_services.analysis_cancel(user=owner, analysis=analysis)
        return {
            "classifiers": [str(refused.code)],
            "videos": [str(video.code)],
            "analyses": [str(analysis.code)],
        }

    def _token(self, owner: Any) -> str:
        """A personal API token for the owner (shown here once, as on the account page)."""
        _token, secret = api_token_create(user=owner, name="seeded for the API", expires_in_days=1)
        return str(secret)


def _result_files(analysis: Analysis) -> list[str]:
    """The analysis's result files, relative to its folder, as its manifest lists them."""
    files = (analysis.manifest or {}).get("files") or []
    paths = [str(item.get("path")) for item in files if isinstance(item, dict) and item.get("path")]
    return paths[:20]
