"""Loaded with `-p` (pytest.ini) so it runs before pytest-django reads the settings.

Settings refuse to start without SECRET_KEY unless DEBUG=1 or GRADCAM_ALLOW_DEV_SECRET=1;
tests use the development key, explicitly. Child processes the tests start inherit it.

The tests run with DEBUG off, as production does, but their live server speaks plain HTTP:
the HTTPS-only defaults (redirect to https://, Secure cookies, HSTS) are switched off here, by
name, rather than weakened in the settings. tests/test_settings.py checks those defaults in a
fresh process without these variables.
"""

import os

TEST_ENVIRONMENT = {
    "GRADCAM_ALLOW_DEV_SECRET": "1",
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "SECURE_HSTS_SECONDS": "0",
}

for _name, _value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
