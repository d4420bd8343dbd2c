"""URLs of the analyses app's API, mounted under /api/v1/ (UUID codes, never pks)."""

from django.urls import path

from analyses.api import library

urlpatterns = [
    path("classifiers/", library.classifier_list_view, name="api_classifiers"),
    path("classifiers/<uuid:code>/", library.classifier_detail_view, name="api_classifier"),
    path("classifiers/<uuid:code>/file/", library.classifier_file_view, name="api_classifier_file"),
]
