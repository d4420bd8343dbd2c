"""Account, team and API token pages. Teams are addressed by their UUID `code`, never the pk."""

from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views
from accounts.forms import StyledAuthenticationForm, StyledPasswordChangeForm

HOME_PATH = "/"

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(
            authentication_form=StyledAuthenticationForm,
            redirect_authenticated_user=True,
            # "/" (the home page, `library:home`) unless a safe ?next= is given; a literal
            # path so log-in keeps working whatever the home route is called.
            next_page=HOME_PATH,
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path(
        "password/",
        auth_views.PasswordChangeView.as_view(form_class=StyledPasswordChangeForm),
        name="password_change",
    ),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("teams/", views.team_list, name="team_list"),
    path("teams/new/", views.team_create_view, name="team_create"),
    path("teams/<uuid:code>/", views.team_detail, name="team_detail"),
    path("teams/<uuid:code>/members/add/", views.team_member_add_view, name="team_member_add"),
    path(
        "teams/<uuid:code>/members/<uuid:user_code>/role/",
        views.team_member_role_view,
        name="team_member_role",
    ),
    path(
        "teams/<uuid:code>/members/<uuid:user_code>/remove/",
        views.team_member_remove_view,
        name="team_member_remove",
    ),
    path("teams/<uuid:code>/leave/", views.team_leave_view, name="team_leave"),
    path("tokens/", views.api_tokens_view, name="api_tokens"),
    path("tokens/<uuid:code>/revoke/", views.api_token_revoke_view, name="api_token_revoke"),
]
