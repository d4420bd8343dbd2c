"""Admin for users and teams.

Memberships are edited in one place only, inline on the team, and every change there is
recorded with `audit_log` (the same action codes as the team pages, with "via": "admin") and
must leave the team an owner. Elsewhere (on the user, in the membership list) they are
read-only. Teams are not deleted here: that would silently unshare everything shared with them.
Users are not deleted either (their memberships would vanish unaudited and their audit events
would lose their actor): the "Deactivate" action calls `user_deactivate`, and `is_active` is
changed only through it and "Reactivate".
API tokens are listed read-only, never with their secret (not stored) or its hash; the
"Revoke" action calls `api_token_revoke`, which audits it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils import timezone

from accounts import services
from accounts import tokens as tokens_module
from accounts.models import ApiToken, ApiTokenState, Team, TeamMembership, TeamRole, User, UserQuota
from audit.log import audit_log

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations  # a development dependency: for type checkers only


class _TeamCount(TypedDict):
    _team_count: int  # annotated by UserAdmin.get_queryset


class _MemberCount(TypedDict):
    _member_count: int  # annotated by TeamAdmin.get_queryset


def _staff_user(request: HttpRequest) -> User:
    # The admin site serves only logged-in staff, so request.user is a User here, never the
    # AnonymousUser the stubs also allow.
    return cast(User, request.user)


class _ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipOfUserInline(_ReadOnlyMixin, admin.TabularInline):
    model = TeamMembership
    fk_name = "user"
    extra = 0
    fields = ("team", "role", "added_by", "created_at")
    readonly_fields = ("team", "role", "added_by", "created_at")
    verbose_name_plural = "Team memberships (edit them on the team)"


class UserQuotaInline(admin.StackedInline):
    """Per-user limits; empty fields mean the site defaults (GRADCAM_QUOTA_*)."""

    model = UserQuota
    extra = 1  # the form is there to fill in; left empty, nothing is saved
    max_num = 1
    can_delete = False
    fields = ("storage_mb", "active_analyses", "updated_at")
    readonly_fields = ("updated_at",)
    verbose_name_plural = "Quota (empty: the site default)"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = (
        "username",
        "email",
        "team_count",
        "is_active",
        "is_staff",
        "last_login",
        "date_joined",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined", "last_login", "teams")
    search_fields = ("username", "email", "first_name", "last_name", "code", "teams__name")
    readonly_fields = ("code", "is_active", "last_login", "date_joined")
    # DjangoUserAdmin sets fieldsets; only the stubs' ModelAdmin type allows None.
    fieldsets = ((None, {"fields": ("code",)}), *(DjangoUserAdmin.fieldsets or ()))
    inlines = (UserQuotaInline, MembershipOfUserInline)
    ordering = ("username",)
    actions = ("deactivate_users", "reactivate_users")

    @transaction.atomic
    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        changed = [
            (
                inline_form.instance,
                {name: inline_form.cleaned_data.get(name) for name in inline_form.changed_data},
            )
            for inline_form in formset.forms
            if isinstance(inline_form.instance, UserQuota) and inline_form.has_changed()
        ]
        super().save_formset(request, form, formset, change)
        for quota, values in changed:
            audit_log(
                actor=request.user,
                action="user.quota_changed",
                target=quota.user,
                data={"username": quota.user.get_username(), **values, "via": "admin"},
            )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Deactivate selected users (they can no longer log in; nothing is deleted)")
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            try:
                changed = services.user_deactivate(actor=request.user, user=user)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), level=messages.ERROR)
            else:
                self.message_user(
                    request, f"{user.get_username()} {'deactivated' if changed else 'was already inactive'}."
                )

    @admin.action(description="Reactivate selected users")
    def reactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            changed = services.user_reactivate(actor=request.user, user=user)
            self.message_user(
                request, f"{user.get_username()} {'reactivated' if changed else 'was already active'}."
            )

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(_team_count=Count("team_memberships", distinct=True))

    @admin.display(description="Teams", ordering="_team_count")
    def team_count(self, obj: WithAnnotations[User, _TeamCount]) -> int:
        return obj._team_count


class _KeepAnOwnerFormSet(BaseInlineFormSet):
    """A team that keeps members must keep an owner (as the team pages insist)."""

    def clean(self) -> None:
        super().clean()
        kept = [
            form
            for form in self.forms
            if getattr(form, "cleaned_data", None)
            and form.cleaned_data.get("user")
            # BaseFormSet._should_delete_form is private, so the stubs leave it out.
            and not self._should_delete_form(form)  # type: ignore[attr-defined]
        ]
        if kept and not any(form.cleaned_data.get("role") == TeamRole.OWNER for form in kept):
            raise ValidationError("A team needs at least one owner: make someone else an owner first.")


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    formset = _KeepAnOwnerFormSet
    fk_name = "team"
    extra = 1
    fields = ("user", "role", "added_by", "created_at")
    readonly_fields = ("added_by", "created_at")
    autocomplete_fields = ("user",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "code", "member_count", "owner_names", "created_by", "created_at")
    list_filter = ("created_at",)
    search_fields = ("name", "description", "code", "members__username")
    readonly_fields = ("code", "created_by", "created_at")
    fields = ("name", "description", "code", "created_by", "created_at")
    inlines = (TeamMembershipInline,)
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return (
            super()
            .get_queryset(request)
            .annotate(_member_count=Count("memberships", distinct=True))
            .prefetch_related("memberships__user")
        )

    @admin.display(description="Members", ordering="_member_count")
    def member_count(self, obj: WithAnnotations[Team, _MemberCount]) -> int:
        return obj._member_count

    @admin.display(description="Owners")
    def owner_names(self, obj: Team) -> str:
        return ", ".join(m.user.get_username() for m in obj.memberships.all() if m.role == "owner")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = _staff_user(request)
        super().save_model(request, obj, form, change)
        if not change:
            audit_log(
                actor=request.user,
                action="team.created",
                target=obj,
                team=obj,
                data={"name": obj.name, "via": "admin"},
            )

    @transaction.atomic
    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        # The same audit events as the team pages; memberships added here record who added them.
        team = form.instance
        before = {m.pk: m for m in TeamMembership.objects.filter(team=team).select_related("user")}
        instances = formset.save(commit=False)
        for instance in instances:
            if isinstance(instance, TeamMembership) and instance.added_by_id is None:
                instance.added_by = _staff_user(request)
            instance.save()
        events: list[tuple[str, Any, str]] = []  # (action, user, role)
        for obj in formset.deleted_objects:
            old = before.get(obj.pk, obj)
            obj.delete()
            events.append(("team.member_removed", old.user, old.role))
        for obj in instances:
            old = before.get(obj.pk)
            if old is None:
                events.append(("team.member_added", obj.user, obj.role))
            elif old.user_id != obj.user_id:
                events += [
                    ("team.member_removed", old.user, old.role),
                    ("team.member_added", obj.user, obj.role),
                ]
            elif old.role != obj.role:
                audit_log(
                    actor=request.user,
                    action="team.member_role_changed",
                    target=team,
                    team=team,
                    data={
                        "username": obj.user.get_username(),
                        "user": str(obj.user.code),
                        "from": old.role,
                        "to": obj.role,
                        "via": "admin",
                    },
                )
        for action, user, role in events:
            audit_log(
                actor=request.user,
                action=action,
                target=team,
                team=team,
                data={"username": user.get_username(), "user": str(user.code), "role": role, "via": "admin"},
            )
        formset.save_m2m()


@admin.register(TeamMembership)
class TeamMembershipAdmin(_ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("team", "user", "role", "added_by", "created_at")
    list_filter = ("role", "created_at")
    search_fields = ("team__name", "user__username", "user__email")
    autocomplete_fields = ("team", "user")
    readonly_fields = ("added_by", "created_at")


class _ApiTokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state.value, state.label) for state in ApiTokenState]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        live = Q(revoked_at__isnull=True)
        if self.value() == ApiTokenState.ACTIVE:
            return queryset.filter(live & (Q(expires_at__isnull=True) | Q(expires_at__gt=now)))
        if self.value() == ApiTokenState.EXPIRED:
            return queryset.filter(live, expires_at__lte=now)
        if self.value() == ApiTokenState.REVOKED:
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(_ReadOnlyMixin, admin.ModelAdmin):
    # key_sha256 is left out everywhere: a hash of a secret is no business of a page.
    list_display = (
        "name",
        "user",
        "shown_prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "state",
    )
    list_filter = (_ApiTokenStateFilter, "created_at")
    search_fields = ("name", "prefix", "user__username", "code")
    fields = (
        "code",
        "user",
        "name",
        "shown_prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields
    list_select_related = ("user",)
    actions = ("revoke_tokens",)
    date_hierarchy = "created_at"

    @admin.display(description="Token", ordering="prefix")
    def shown_prefix(self, obj: ApiToken) -> str:
        return f"gcs_{obj.prefix}…"

    @admin.display(description="State")
    def state(self, obj: ApiToken) -> str:
        return obj.state.label

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.change_apitoken")

    @admin.action(
        description="Revoke selected API tokens (scripts using them are refused)", permissions=["revoke"]
    )
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.select_related("user"):
            if tokens_module.api_token_revoke(actor=request.user, token=token, via="admin"):
                revoked += 1
        skipped = queryset.count() - revoked
        self.message_user(
            request,
            f"{revoked} API token{'s' if revoked != 1 else ''} revoked"
            + (f"; {skipped} already revoked." if skipped else "."),
        )
