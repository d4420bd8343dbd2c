"""Forms for sign-up, log-in, password change and team management.

Inputs get the attributes browsers use for password managers (`autocomplete`), so the pages
behave like any well-made log-in page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm, UserCreationForm

from accounts.models import Team, TeamRole, User


class SignupForm(UserCreationForm):
    email = forms.EmailField(
        required=False,
        help_text="Optional. Used only to contact you about your account.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    # The stubs do not declare the forms' inner Meta classes; UserCreationForm.Meta exists at run time.
    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("username", "email")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password1"].widget.attrs["autocomplete"] = "new-password"
        self.fields["password2"].widget.attrs["autocomplete"] = "new-password"

    def clean_username(self) -> str:
        username = super().clean_username()
        # Usernames are how people add each other to teams: "Alice" and "alice" would be
        # indistinguishable to a colleague typing them, so refuse case-insensitive duplicates.
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with that username already exists.")
        return username


class StyledAuthenticationForm(AuthenticationForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs["autocomplete"] = "current-password"


class StyledPasswordChangeForm(PasswordChangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["old_password"].widget.attrs["autocomplete"] = "current-password"
        self.fields["new_password1"].widget.attrs["autocomplete"] = "new-password"
        self.fields["new_password2"].widget.attrs["autocomplete"] = "new-password"


class TeamCreateForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ("name", "description")
        widgets = {
            "name": forms.TextInput(attrs={"autofocus": True, "placeholder": "e.g. Vision Lab"}),
            "description": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {"description": "Optional: what this team works on."}

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the team a name.")
        return name


class TeamMemberAddForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(attrs={"placeholder": "their username", "autocomplete": "off"}),
    )
    role = forms.ChoiceField(choices=TeamRole.choices, initial=TeamRole.MEMBER)

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip()


class TeamMemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=TeamRole.choices)


class ApiTokenCreateForm(forms.Form):
    # Bounds are the service's (accounts.tokens); the form only parses and says them early.
    name = forms.CharField(
        max_length=100,
        help_text="What uses it, so you recognise it later: a script, a CI pipeline, a machine.",
        widget=forms.TextInput(attrs={"placeholder": "e.g. training cluster", "autocomplete": "off"}),
    )
    expires_in_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=365,
        initial=90,
        help_text="1 to 365 days; leave empty for a token that never expires.",
        widget=forms.NumberInput(attrs={"placeholder": "never"}),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the token a name, e.g. the script or machine that uses it.")
        return name
