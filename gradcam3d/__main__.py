"""`python -m gradcam3d {inspect,probe,transcode,preview,analyze,worker}` (gradcam3d.cli).

Every sub-command prints JSON on stdout. On refusal it exits with status 2 and prints the
one-line reason on stderr (and `{"ok": false, "error": ...}` on stdout); an internal error
exits with status 1.
"""

from gradcam3d.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
