"""URLs of the accounts API, mounted under /api/v1/ by gradcam_site.api_urls."""

from django.urls import path

from accounts.api import Me

urlpatterns = [
    path("me/", Me.as_view(), name="api_me"),
]
