"""URLs of sharing: shares, share links (managed by code; opened by token), "Shared with me"."""

from django.urls import path

from analyses.sharing import views

app_name = "sharing"
urlpatterns = [
    path("shared/", views.shared_with_me, name="shared_with_me"),
    path("share/<str:kind>/<uuid:code>/", views.share_create_view, name="share_create"),
    path("shares/<uuid:code>/revoke/", views.share_revoke_view, name="share_revoke"),
    path("analyses/<uuid:code>/links/", views.share_link_create_view, name="link_create"),
    path("links/<uuid:code>/revoke/", views.share_link_revoke_view, name="link_revoke"),
    path("s/<str:token>/", views.link_page, name="link_page"),
    path("compare/<uuid:code>/links/", views.comparison_link_create_view, name="comparison_link_create"),
    path("s/<str:token>/a/<uuid:code>/files/<path:path>", views.link_file, name="link_file"),
    path(
        "s/<str:token>/d/<uuid:code>/files/<path:path>",
        views.link_difference_file,
        name="link_difference_file",
    ),
    path("s/<str:token>/download.zip", views.link_zip, name="link_zip"),
]
