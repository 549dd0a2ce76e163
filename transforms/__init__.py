"""fgbg pipeline stages: one module per stage, each a Beam PTransform plus the
pure numpy/PIL functions it calls.

DenseDepth's published weights use Keras 2 layer names (with '/'), which Keras 3
refuses, and TensorFlow decides what `tf.keras` means on first access from
TF_USE_LEGACY_KERAS. Importing tensorflow-transform would set it as a side
effect; we decide it once, here, before anything imports TensorFlow.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
