"""Admin pages of the analyses app, one module per context (Django autodiscovers this one)."""

from analyses.library import admin as library_admin  # noqa: F401 - registers classifiers and videos
from analyses.runs import admin as runs_admin  # noqa: F401 - registers analyses
from analyses.sharing import admin as sharing_admin  # noqa: F401 - registers shares and share links
