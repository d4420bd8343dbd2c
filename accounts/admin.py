"""Admin for users and teams (memberships edited inline on the team)."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from accounts.models import Team, TeamMembership, User


class MembershipOfUserInline(admin.TabularInline):
    model = TeamMembership
    fk_name = "user"
    extra = 0
    fields = ("team", "role", "added_by", "created_at")
    readonly_fields = ("added_by", "created_at")
    autocomplete_fields = ("team",)
    verbose_name_plural = "Team memberships"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = (
        "username", "email", "team_count", "is_active", "is_staff", "last_login", "date_joined",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "date_joined", "last_login", "teams")
    search_fields = ("username", "email", "first_name", "last_name", "code", "teams__name")
    readonly_fields = ("code", "last_login", "date_joined")
    fieldsets = ((None, {"fields": ("code",)}), *DjangoUserAdmin.fieldsets)
    inlines = (MembershipOfUserInline,)
    ordering = ("username",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).annotate(_team_count=Count("team_memberships", distinct=True))

    @admin.display(description="Teams", ordering="_team_count")
    def team_count(self, obj: User) -> int:
        return obj._team_count


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
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
            super().get_queryset(request)
            .annotate(_member_count=Count("memberships", distinct=True))
            .prefetch_related("memberships__user")
        )

    @admin.display(description="Members", ordering="_member_count")
    def member_count(self, obj: Team) -> int:
        return obj._member_count

    @admin.display(description="Owners")
    def owner_names(self, obj: Team) -> str:
        return ", ".join(m.user.get_username() for m in obj.memberships.all() if m.role == "owner")

    def save_model(self, request: HttpRequest, obj: Team, form: object, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: object, formset: object, change: bool) -> None:
        # Memberships added by an admin record who added them, like those added in the app.
        instances = formset.save(commit=False)
        for instance in instances:
            if isinstance(instance, TeamMembership) and instance.added_by_id is None:
                instance.added_by = request.user
            instance.save()
        for obj in formset.deleted_objects:
            obj.delete()
        formset.save_m2m()


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    list_display = ("team", "user", "role", "added_by", "created_at")
    list_filter = ("role", "created_at")
    search_fields = ("team__name", "user__username", "user__email")
    autocomplete_fields = ("team", "user")
    readonly_fields = ("added_by", "created_at")
