"""Forms of the library pages. They only parse input; the services decide and store."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Q

from accounts.models import Team
from accounts.selectors import teams_of

_CLASS_MAP_HELP = (
    "“index: label” lines as in ClassMap.txt (e.g. “0: Basketball”), or one label per line in class order."
)
# Enforced while the upload streams in (views.library.UploadLimitHandler) and again here.
CLASS_MAP_MAX_BYTES = 256 * 1024


class _TeamChoiceMixin:
    """A `team` select limited to the user's teams, with "Only me" as the empty choice.

    An edit form also keeps the object's current team, even when the user is no longer in it
    (an owner who left the team): otherwise the select would fall back to "Only me" and saving
    any other change would silently unshare the object.
    """

    def _setup_team_field(self, *, user: Any, current_team: Team | None = None) -> None:
        field = self.fields["team"]  # type: ignore[attr-defined]
        choices = Q(pk__in=teams_of(user=user).values("pk"))
        if current_team is not None:
            choices |= Q(pk=current_team.pk)
            my_team_pks = set(teams_of(user=user).values_list("pk", flat=True))
            field.label_from_instance = lambda team: (
                team.name if team.pk in my_team_pks else f"{team.name} (you are no longer a member)"
            )
        field.queryset = Team.objects.filter(choices).order_by("name", "pk")
        field.empty_label = "Only me (private)"


class _LibraryUploadForm(_TeamChoiceMixin, forms.Form):
    """The fields every library upload has; a subclass declares its `file` field and its own."""

    # Declared fields of a base class come first; keep the file field at the top instead.
    field_order = ["file"]

    name = forms.CharField(max_length=200, required=False, help_text="Defaults to the file name.")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, label="Share with team")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_team_field(user=user)


class _LibraryEditForm(_TeamChoiceMixin, forms.Form):
    """The fields every library object's edit form has; a subclass adds its own."""

    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, label="Team")

    def __init__(self, *args: Any, user: Any, current_team: Team | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._setup_team_field(user=user, current_team=current_team)


class ClassifierUploadForm(_LibraryUploadForm):
    file = forms.FileField(
        label="Model file (.h5 or .keras)",
        widget=forms.ClearableFileInput(attrs={"accept": ".h5,.hdf5,.keras"}),
    )
    class_map_file = forms.FileField(
        required=False,
        label="Class map file",
        help_text=_CLASS_MAP_HELP,
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,text/plain"}),
    )
    class_map_text = forms.CharField(
        required=False,
        label="…or type the labels",
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "0: Basketball\n1: Biking"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        uploaded = cleaned.get("class_map_file")
        if uploaded:
            if uploaded.size > CLASS_MAP_MAX_BYTES:
                self.add_error("class_map_file", "The class map file is too large to be a class map.")
                return cleaned
            raw = uploaded.read()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                self.add_error("class_map_file", "The class map file is not UTF-8 text.")
                return cleaned
            if cleaned.get("class_map_text", "").strip():
                self.add_error("class_map_text", "Give either a class map file or typed labels, not both.")
            cleaned["class_map_text"] = text
        return cleaned


class ClassifierEditForm(_LibraryEditForm):
    class_map_text = forms.CharField(
        required=False,
        label="Class labels",
        help_text=_CLASS_MAP_HELP,
        widget=forms.Textarea(attrs={"rows": 6}),
    )


class VideoUploadForm(_LibraryUploadForm):
    file = forms.FileField(
        label="Video file",
        widget=forms.ClearableFileInput(attrs={"accept": "video/*,.mp4,.avi,.mkv,.mov,.webm"}),
    )
    expected_class = forms.IntegerField(
        required=False,
        min_value=0,
        label="True class",
        help_text="The class index this clip shows; analyses use it to show why a prediction was wrong.",
    )


class VideoEditForm(_LibraryEditForm):
    expected_class = forms.IntegerField(required=False, min_value=0, label="True class")
