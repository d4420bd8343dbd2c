"""URLs of comparisons (pages, save, delete, the chooser) and their difference rows. UUID codes only."""

from django.urls import path

from analyses.compare import views

app_name = "compare"
urlpatterns = [
    path("compare/", views.compare_page, name="page"),
    path("compare/save/", views.comparison_save, name="save"),
    path("compare/choose/<uuid:code>/", views.compare_choose, name="choose"),
    path("compare/differences/", views.difference_request_view, name="difference_request"),
    path("compare/differences/<uuid:code>/status.json", views.difference_status, name="difference_status"),
    path("compare/differences/<uuid:code>/files/<path:path>", views.difference_file, name="difference_file"),
    path("compare/<uuid:code>/", views.comparison_detail, name="detail"),
    path("compare/<uuid:code>/delete/", views.comparison_delete_view, name="delete"),
]
