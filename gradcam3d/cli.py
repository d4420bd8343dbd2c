"""Sub-command registry for `python -m gradcam3d`.

Each module that offers a sub-command defines `register_cli(subparsers)`, adding its parser
with `set_defaults(handler=fn)`; `fn(args) -> dict` returns the JSON result or raises
`Refusal`. Modules listed here must not import TensorFlow at import time.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from typing import Any

from gradcam3d.errors import EXIT_INTERNAL_ERROR, EXIT_OK, EXIT_REFUSED, Refusal

COMMAND_MODULES = (
    "gradcam3d.modelcheck",  # inspect
    "gradcam3d.video",  # probe, transcode
    "gradcam3d.pipeline",  # analyze
    "gradcam3d.demo",  # make-demo
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gradcam3d", description="3D Grad-CAM engine")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register_cli(subparsers)
    return parser


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except Refusal as exc:
        message = " ".join(str(exc).split())
        emit({"ok": False, "error": message, "code": exc.code})
        sys.stderr.write(message + "\n")
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERNAL_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a child process
        traceback.print_exc(file=sys.stderr)
        emit({"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}", "code": "internal"})
        return EXIT_INTERNAL_ERROR
    if result is not None:
        emit({"ok": True, **result})
    return EXIT_OK
