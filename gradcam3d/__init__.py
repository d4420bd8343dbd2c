"""gradcam3d: 3D Grad-CAM for Keras video classifiers.

A plain Python package (it never imports Django). TensorFlow is imported lazily, only by the
parts that load and run a model, so `inspect` and `probe` start fast and never load it.
"""
__version__ = "0.1.0"
