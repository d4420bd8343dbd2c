"""URLs of the analyses app's API, mounted under /api/v1/ (UUID codes, never pks)."""

from django.urls import path

from analyses.api import compare, library, runs, sharing, videos

urlpatterns = [
    path("classifiers/", library.classifier_list_view, name="api_classifiers"),
    path("classifiers/<uuid:code>/", library.classifier_detail_view, name="api_classifier"),
    path("classifiers/<uuid:code>/file/", library.classifier_file_view, name="api_classifier_file"),
    path("videos/", videos.video_list_view, name="api_videos"),
    path("videos/<uuid:code>/", videos.video_detail_view, name="api_video"),
    path("videos/<uuid:code>/original/", videos.video_original_view, name="api_video_original"),
    path("videos/<uuid:code>/rendition.mp4", videos.video_rendition_view, name="api_video_rendition"),
    path("videos/<uuid:code>/poster.jpg", videos.video_poster_view, name="api_video_poster"),
    path("analyses/", runs.analysis_list_view, name="api_analyses"),
    path("analyses/<uuid:code>/", runs.analysis_detail_view, name="api_analysis"),
    path("analyses/<uuid:code>/cancel/", runs.analysis_cancel_view, name="api_analysis_cancel"),
    path("analyses/<uuid:code>/rerun/", runs.analysis_rerun_view, name="api_analysis_rerun"),
    path("analyses/<uuid:code>/verify/", runs.analysis_verify_view, name="api_analysis_verify"),
    path(
        "analyses/<uuid:code>/verifications/",
        runs.analysis_verifications_view,
        name="api_analysis_verifications",
    ),
    path("analyses/<uuid:code>/files/", runs.analysis_files_view, name="api_analysis_files"),
    path("analyses/<uuid:code>/files/<path:path>", runs.analysis_file_view, name="api_analysis_file"),
    path("analyses/<uuid:code>/download.zip", runs.analysis_zip_view, name="api_analysis_zip"),
    path("verifications/<uuid:code>/", runs.verification_detail_view, name="api_verification"),
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
