"""Root URLs: admin, accounts, and the library/analyses pages (mounted at the site root)."""

from django.contrib import admin
from django.urls import include, path

from gradcam_site.health import healthz

urlpatterns = [
    path("healthz/", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/v1/", include("gradcam_site.api_urls")),
    path("audit/", include("audit.urls")),
    path("", include("analyses.library.urls")),
    path("", include("analyses.runs.urls")),
    path("", include("analyses.sharing.urls")),
    path("", include("analyses.compare.urls")),
]
