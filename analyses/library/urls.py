"""URLs of the home page and the classifier and video libraries (UUID codes, never pks)."""

from django.urls import path

from analyses.library import views as library

app_name = "library"
urlpatterns = [
    path("", library.home, name="home"),
    path("classifiers/", library.classifier_list, name="classifier_list"),
    path("classifiers/<uuid:code>/", library.classifier_detail, name="classifier_detail"),
    path("classifiers/<uuid:code>/status.json", library.classifier_status, name="classifier_status"),
    path("classifiers/<uuid:code>/delete/", library.classifier_delete, name="classifier_delete"),
    path("classifiers/<uuid:code>/file/", library.classifier_download, name="classifier_download"),
    path("videos/", library.video_list, name="video_list"),
    path("videos/<uuid:code>/", library.video_detail, name="video_detail"),
    path("videos/<uuid:code>/status.json", library.video_status, name="video_status"),
    path("videos/<uuid:code>/delete/", library.video_delete, name="video_delete"),
    path("videos/<uuid:code>/original/", library.video_original, name="video_original"),
    path("videos/<uuid:code>/rendition.mp4", library.video_rendition, name="video_rendition"),
    path("videos/<uuid:code>/poster.jpg", library.video_poster, name="video_poster"),
]
