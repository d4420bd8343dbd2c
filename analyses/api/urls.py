"""URLs of the analyses app's API, mounted under /api/v1/ (UUID codes, never pks)."""

from django.urls import path

from analyses.api import compare, library, sharing

urlpatterns = [
    path("classifiers/", library.classifier_list_view, name="api_classifiers"),
    path("classifiers/<uuid:code>/", library.classifier_detail_view, name="api_classifier"),
    path("classifiers/<uuid:code>/file/", library.classifier_file_view, name="api_classifier_file"),
    path("shares/", sharing.share_list_view, name="api_shares"),
    path("shares/<uuid:code>/", sharing.share_detail_view, name="api_share"),
    path("share-links/", sharing.share_link_list_view, name="api_share_links"),
    path("share-links/<uuid:code>/", sharing.share_link_detail_view, name="api_share_link"),
    path("comparisons/", compare.comparison_list_view, name="api_comparisons"),
    path("comparisons/<uuid:code>/", compare.comparison_detail_view, name="api_comparison"),
    path("differences/", compare.difference_create_view, name="api_differences"),
    path("differences/<uuid:code>/", compare.difference_detail_view, name="api_difference"),
    path(
        "differences/<uuid:code>/files/<path:path>", compare.difference_file_view, name="api_difference_file"
    ),
]
