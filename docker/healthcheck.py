"""Docker HEALTHCHECK for the image (exit 0 healthy, 1 not).

Web containers (default): GET http://127.0.0.1:8000/healthz/ as a client behind the proxy would,
so the answer is the view's own: the Host header is the first ALLOWED_HOSTS entry (any other
would be refused with 400) and, when SECURE_PROXY_SSL_HEADER is set, that header too (otherwise
production settings answer 301 to https://).

Worker containers (`--direct`): there is no web server; run the same checks in-process
(gradcam_site.health.run_checks), which loads the settings but not TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

URL = os.environ.get("GRADCAM_HEALTHCHECK_URL", "http://127.0.0.1:8000/healthz/")


def _headers() -> dict[str, str]:
    headers = {"Accept": "application/json"}
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = next((h.lstrip(".") for h in hosts if h != "*"), "")
    if host:
        headers["Host"] = host
    proxy_header = os.environ.get("SECURE_PROXY_SSL_HEADER", "")
    name, colon, value = proxy_header.partition(":")
    if colon and name.strip() and value.strip():
        headers[name.strip()] = value.strip()
    return headers


def over_http() -> int:
    request = urllib.request.Request(URL, headers=_headers())
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            print(response.read().decode("utf-8", "replace"))
            return 0
    except urllib.error.HTTPError as error:
        print(f"HTTP {error.code}: {error.read().decode('utf-8', 'replace')[:300]}")
    except OSError as error:
        print(f"no answer from {URL}: {error}")
    return 1


def direct() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gradcam_site.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()
    from gradcam_site.health import OK, run_checks

    report = run_checks()
    print(json.dumps(report))
    return 0 if report["status"] == OK else 1


if __name__ == "__main__":
    sys.exit(direct() if "--direct" in sys.argv[1:] else over_http())
