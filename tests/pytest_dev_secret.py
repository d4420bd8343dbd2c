"""Loaded with `-p` (pytest.ini) so it runs before pytest-django reads the settings.

Settings refuse to start without SECRET_KEY unless DEBUG=1 or GRADCAM_ALLOW_DEV_SECRET=1;
tests use the development key, explicitly. Child processes the tests start inherit it.
"""
import os

os.environ.setdefault("GRADCAM_ALLOW_DEV_SECRET", "1")
