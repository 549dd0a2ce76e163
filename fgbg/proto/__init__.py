"""TensorFlow's tf.train.Example protos, vendored so that writing records
(fgbg/records.py) needs only the protobuf library, not TensorFlow.

The package is `fgbg.tensorflow`, not `tensorflow`, because TensorFlow
registers `tensorflow.Example` in the same process-wide descriptor pool and
the pool refuses a second file defining it; the wire format has no package
names, so the bytes are TensorFlow's. README.md says where the files come
from and how example_pb2 and feature_pb2 were generated.
"""
