"""URLs of the accounts app's API, mounted under /api/v1/ (teams and members by UUID code)."""

from django.urls import path

from accounts import api

urlpatterns = [
    path("me/", api.Me.as_view(), name="api_me"),
    path("teams/", api.TeamList.as_view(), name="api_teams"),
    path("teams/<uuid:code>/", api.TeamDetail.as_view(), name="api_team"),
    path("teams/<uuid:code>/members/", api.TeamMembers.as_view(), name="api_team_members"),
    path("teams/<uuid:code>/members/<uuid:user_code>/", api.TeamMember.as_view(), name="api_team_member"),
    path("teams/<uuid:code>/leave/", api.TeamLeave.as_view(), name="api_team_leave"),
]
