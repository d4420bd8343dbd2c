"""`python -m demo --out DIR [--seed 0] [--force]`: build (or reuse) the offline demo.

Prints the same JSON lines and exit statuses as the engine's commands (docs/engine-contract.md):
the final line `{"ok": true, "model": ..., "classmap": ..., "videos": [...], ...}`; a refusal
(a negative seed) exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import demo.build as build
from gradcam3d.cli import run_handler
from gradcam3d.errors import Refusal

VIDEO_KEYS = ("path", "name", "true_class", "labelled_class", "description")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description="train the demo classifier and write sample videos"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching demo exists")
    return parser


def make_demo_command(args: argparse.Namespace) -> dict[str, Any]:
    if args.seed < 0:
        raise Refusal("The seed must be a non-negative integer.", code="bad_seed")
    # Training runs in this process only, so it may use oneDNN (about 4x faster here); the
    # Grad-CAM engine keeps it off (gradcam3d/tf.py). TF reads the flag when it loads.
    if "tensorflow" in sys.modules:
        raise RuntimeError("demo: TensorFlow was imported before oneDNN could be enabled")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = build.make_demo(out_dir=args.out, seed=args.seed, force=args.force)
    return {
        "model": result["model"],
        "classmap": result["classmap"],
        "demo_json": str(Path(args.out).resolve() / build.DEMO_JSON),
        "input_shape": result["input_shape"],
        "class_names": result["class_names"],
        "train_accuracy": result["train_accuracy"],
        "held_out_accuracy": result["held_out_accuracy"],
        "reused": result["reused"],
        "videos": [{key: video[key] for key in VIDEO_KEYS} for video in result["videos"]],
    }


def main(argv: list[str] | None = None) -> int:
    return run_handler(make_demo_command, build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
