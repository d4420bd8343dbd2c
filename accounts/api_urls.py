"""URLs of the accounts app's API, mounted under /api/v1/ by gradcam_site/api_urls.py (included
by name, so that gradcam_site never imports accounts: accounts already uses gradcam_site)."""

from django.urls import path

from accounts.api import Me

urlpatterns = [
    path("me/", Me.as_view(), name="api_me"),
]
