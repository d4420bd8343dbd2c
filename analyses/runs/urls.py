"""URLs of analyses (new, progress, result pages, result files). UUID codes, never pks."""

from django.urls import path

from analyses.runs import verification_views
from analyses.runs import views as analysis

app_name = "analyses_run"
urlpatterns = [
    path("analyses/", analysis.analysis_list, name="list"),
    path("analyses/new/", analysis.analysis_new, name="new"),
    path("analyses/preview/<uuid:code>/", analysis.preview_detail, name="preview"),
    path("analyses/preview/<uuid:code>/status.json", analysis.preview_status, name="preview_status"),
    path("analyses/preview/<uuid:code>/clip.mp4", analysis.preview_clip, name="preview_clip"),
    path("analyses/<uuid:code>/", analysis.analysis_detail, name="detail"),
    path("analyses/<uuid:code>/status.json", analysis.analysis_status, name="status"),
    path("analyses/<uuid:code>/files/<path:path>", analysis.analysis_file, name="file"),
    path("analyses/<uuid:code>/download.zip", analysis.analysis_zip, name="zip"),
    path("analyses/<uuid:code>/rerun/", analysis.analysis_rerun_view, name="rerun"),
    path("analyses/<uuid:code>/cancel/", analysis.analysis_cancel_view, name="cancel"),
    path("analyses/<uuid:code>/delete/", analysis.analysis_delete_view, name="delete"),
    path("analyses/<uuid:code>/verify/", verification_views.analysis_verify_view, name="verify"),
    path(
        "analyses/<uuid:code>/verifications/<uuid:verification_code>/status.json",
        verification_views.verification_status,
        name="verification_status",
    ),
]
