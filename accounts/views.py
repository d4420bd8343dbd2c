"""Sign-up, team and API token pages. Views parse, call a service or selector, and render.

Access rules: a team is found only among the user's own teams (404 for anyone else); owner-only
actions answer 403 to plain members (the service raises PermissionDenied).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required, login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts import selectors, services
from accounts import tokens as tokens_module
from accounts.forms import (
    ApiTokenCreateForm,
    SignupForm,
    StyledAuthenticationForm,
    TeamCreateForm,
    TeamMemberAddForm,
    TeamMemberRoleForm,
)
from accounts.models import ApiTokenState, Team, TeamRole
from gradcam_site.middleware import client_ip

HOME_PATH = "/"  # the home page (`library:home`), the landing page after sign-up


def _first_message(error: ValidationError) -> str:
    return " ".join(error.messages)


def login_locked_out(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the log-in page that was refused (ours or the admin's) again,
    status 429, with one message for every username. It must not tell whether the account
    exists, so it never depends on the username; only the form's own fields echo it."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed log-in attempts. Logging in is paused for {minutes} minutes for this "
        "username and for your network address: please try again later."
    )
    context = getattr(original_response, "context_data", None) or {}
    form = context.get("form")
    if isinstance(original_response, TemplateResponse) and form is not None and form.is_bound:
        form.errors.clear()  # already validated: this never authenticates again
        form.add_error(None, message)
        response = TemplateResponse(request, original_response.template_name, context, status=429)
    else:
        response = TemplateResponse(
            request,
            "registration/login.html",
            {"form": StyledAuthenticationForm(request), "lockout_message": message},
            status=429,
        )
    return response.render()


@login_not_required
@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(HOME_PATH)
    if request.method == "POST":
        # A taken username is refused by name: limit how often one address may ask.
        try:
            services.throttle_hit(
                scope="signup",
                key=client_ip(request),
                limit_per_hour=settings.GRADCAM_SIGNUP_LIMIT_PER_HOUR,
                message="Too many sign-up attempts from your network address: please try again later.",
            )
        except services.Throttled as refusal:
            return render(
                request,
                "registration/signup.html",
                {"form": SignupForm(), "refusal": str(refusal), "next": request.POST.get("next", "")},
                status=429,
            )
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}! Your account is ready.")
        next_url = request.POST.get("next", "")
        if next_url and url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return redirect(next_url)
        return redirect(HOME_PATH)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "registration/signup.html",
        {"form": form, "next": request.GET.get("next", "")},
        status=status,
    )


@login_required
@require_http_methods(["GET"])
def team_list(request: HttpRequest) -> HttpResponse:
    teams = selectors.teams_of(user=request.user)
    return render(request, "accounts/team_list.html", {"teams": teams})


@login_required
@require_http_methods(["GET", "POST"])
def team_create_view(request: HttpRequest) -> HttpResponse:
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(
                creator=request.user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data.get("description", ""),
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Team “{team.name}” created. You are its owner.")
            return redirect("team_detail", code=team.code)
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/team_form.html", {"form": form}, status=status)


def _render_team_detail(
    request: HttpRequest, *, team: Team, add_form: TeamMemberAddForm | None = None, status: int = 200
) -> HttpResponse:
    memberships = list(selectors.team_memberships(team=team))
    my_membership = next((m for m in memberships if m.user_id == request.user.pk), None)
    is_owner = my_membership is not None and my_membership.role == TeamRole.OWNER
    owner_count = sum(1 for m in memberships if m.role == TeamRole.OWNER)
    context = {
        "team": team,
        "memberships": memberships,
        "my_membership": my_membership,
        "is_owner": is_owner,
        "owner_count": owner_count,
        "add_form": add_form or TeamMemberAddForm(),
        "role_choices": TeamRole.choices,
    }
    return render(request, "accounts/team_detail.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def team_detail(request: HttpRequest, code: str) -> HttpResponse:
    team = selectors.team_get_for_user(code=code, user=request.user)
    return _render_team_detail(request, team=team)


@login_required
@require_POST
def team_member_add_view(request: HttpRequest, code: str) -> HttpResponse:
    team = selectors.team_get_for_user(code=code, user=request.user)
    if not selectors.user_is_team_owner(user=request.user, team=team):
        # Checked before the form so a member learns "not allowed", not "username required".
        raise PermissionDenied("Only team owners can add members.")
    form = TeamMemberAddForm(request.POST)
    if form.is_valid():
        try:
            membership = services.team_member_add(
                actor=request.user,
                team=team,
                username=form.cleaned_data["username"],
                role=form.cleaned_data["role"],
            )
        except services.Throttled as refusal:
            form.add_error(None, str(refusal))
            return _render_team_detail(request, team=team, add_form=form, status=429)
        except ValidationError as error:
            form.add_error(None, error)  # dict errors land on their field ("username")
        else:
            messages.success(
                request,
                f"{membership.user.get_username()} added to {team.name} as {membership.get_role_display().lower()}.",
            )
            return redirect("team_detail", code=team.code)
    return _render_team_detail(request, team=team, add_form=form, status=400)


@login_required
@require_POST
def team_member_role_view(request: HttpRequest, code: str, user_code: str) -> HttpResponse:
    team = selectors.team_get_for_user(code=code, user=request.user)
    membership = selectors.team_member_get(team=team, user_code=user_code)
    form = TeamMemberRoleForm(request.POST)
    role = form.cleaned_data["role"] if form.is_valid() else request.POST.get("role", "")
    try:
        services.team_member_set_role(actor=request.user, team=team, user=membership.user, role=role)
    except ValidationError as error:
        messages.error(request, _first_message(error))
    else:
        messages.success(request, f"{membership.user.get_username()} is now {TeamRole(role).label.lower()}.")
    return redirect("team_detail", code=team.code)


@login_required
@require_POST
def team_member_remove_view(request: HttpRequest, code: str, user_code: str) -> HttpResponse:
    team = selectors.team_get_for_user(code=code, user=request.user)
    membership = selectors.team_member_get(team=team, user_code=user_code)
    leaving = membership.user_id == request.user.pk
    try:
        services.team_member_remove(actor=request.user, team=team, user=membership.user)
    except ValidationError as error:
        messages.error(request, _first_message(error))
        return redirect("team_detail", code=team.code)
    if leaving:
        messages.success(request, f"You left {team.name}.")
        return redirect("team_list")
    messages.success(request, f"{membership.user.get_username()} removed from {team.name}.")
    return redirect("team_detail", code=team.code)


@login_required
@require_POST
def team_leave_view(request: HttpRequest, code: str) -> HttpResponse:
    team = selectors.team_get_for_user(code=code, user=request.user)
    try:
        services.team_leave(user=request.user, team=team)
    except ValidationError as error:
        messages.error(request, _first_message(error))
        return redirect("team_detail", code=team.code)
    messages.success(request, f"You left {team.name}.")
    return redirect(reverse("team_list"))


# --------------------------------------------------------------------------- API tokens
def _render_api_tokens(
    request: HttpRequest, *, form: ApiTokenCreateForm | None = None, status: int = 200
) -> HttpResponse:
    now = timezone.now()
    tokens = [(token, token.state_at(now)) for token in tokens_module.api_tokens_of(user=request.user)]
    context = {
        "tokens": tokens,
        "form": form or ApiTokenCreateForm(),
        "live_count": sum(1 for _, state in tokens if state == ApiTokenState.ACTIVE),
        "max_live": tokens_module.MAX_LIVE_TOKENS_PER_USER,
    }
    return render(request, "accounts/api_tokens.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens_view(request: HttpRequest) -> HttpResponse:
    """The user's tokens and the form to make one; a POST makes it and shows its secret once."""
    if request.method == "GET":
        return _render_api_tokens(request)
    form = ApiTokenCreateForm(request.POST)
    if form.is_valid():
        try:
            token, secret = tokens_module.api_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_in_days=form.cleaned_data.get("expires_in_days"),
            )
        except ValidationError as error:
            form.add_error(None, error)  # dict errors land on their field
        else:
            response = render(request, "accounts/api_token_created.html", {"token": token, "secret": secret})
            response["Cache-Control"] = "no-store"  # the secret is shown this once
            return response
    return _render_api_tokens(request, form=form, status=400)


@login_required
@require_POST
def api_token_revoke_view(request: HttpRequest, code: str) -> HttpResponse:
    token = tokens_module.api_token_get_for_user(code=code, user=request.user)
    if tokens_module.api_token_revoke(actor=request.user, token=token):
        messages.success(request, f"API token “{token.name}” revoked: scripts using it are now refused.")
    else:
        messages.info(request, f"API token “{token.name}” was already revoked.")
    return redirect("api_tokens")
