"""/api/v1/: every resource, the OpenAPI schema and its offline docs (Swagger UI from
drf-spectacular-sidecar's static files). DRF's views exempt themselves from
LoginRequiredMiddleware (they authenticate by session or API token and answer 401 in the API's
error shape); the catch-all 404 is marked `login_not_required`.

The apps' URL modules are included by name, never imported: the apps' API modules import
`gradcam_site.api`, and the site package must not import them back (no package cycle)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from gradcam_site.api import api_not_found, docs_view

urlpatterns = [
    path("", include("accounts.api_urls")),
    path("", include("analyses.api.urls")),
    path("", include("audit.api_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", docs_view(SpectacularSwaggerSplitView.as_view(url_name="api_schema")), name="api_docs"),
    # Last: anything else under /api/v1/ is the API's JSON 404, not the site's HTML page.
    re_path(r"^", api_not_found, name="api_not_found"),
]
