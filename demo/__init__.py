"""The offline demo: a synthetic action dataset (demo.synthetic) and a small Conv3D classifier
trained on it with sample videos (demo.build). `python -m demo --out DIR [--seed 0] [--force]`.

Not part of the engine: it uses `gradcam3d` like any other program would, and `gradcam3d` never
imports it.
"""
