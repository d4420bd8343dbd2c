"""gradcam3d: 3D Grad-CAM for Keras video classifiers.

A plain Python package (it never imports Django). TensorFlow is imported lazily, only by the
parts that load and run a model, so `inspect` and `probe` start fast and never load it.
"""
import os

# TensorFlow 2.21's oneDNN graph rewrites give wrong gradients inside a tf.function for a
# Conv3D+bias+ReLU output that feeds MaxPool3D (max error 0.79 on values up to 1.0, measured
# here; eager mode is right). Grad-CAM is gradients, so oneDNN is off before TF can load.
# It also makes the maps reproducible bit for bit.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
