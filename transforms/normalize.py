"""Normalisation graph: tensorflow-transform over the records as written.

The TFRecord writer hands every serialized record to this stage, in the
same Beam graph, so analysing costs no second read of the shards. The
analysis makes one full pass over the whole dataset (the same pixels as
stats.json) and writes `transform/`: a TF graph that decodes a raw record and
outputs model-ready float tensors, with the dataset's per-channel mean/std
baked in. Training code applies it with
`tft.TFTransformOutput(path).transform_features_layer()`, so serving and
training normalise identically (see transforms/training_data.py).

Outputs of the graph, per sample:
- background, overlay: float32 (H, W, 3), (pixel - channel mean) / channel std
- mask: float32 (H, W, 1) in {0, 1}
- depth (when the build has depth): float32 (H, W, 1); 'minmax': the stored
  0..255 / 255, in [0, 1]; 'metric': metres (stored value / depth_scale, the
  same scale stats.json's mean_unit uses)
"""
from __future__ import annotations

from typing import Callable, Dict

import apache_beam as beam

from transforms.records import decode_exact

TRANSFORM_DIR = "transform"
RAW_IMAGE_FEATURES = ("background", "overlay", "mask", "depth")


def raw_feature_spec(with_depth: bool) -> Dict[str, object]:
    """The record features the graph reads: the encoded images only."""
    import tensorflow as tf

    names = RAW_IMAGE_FEATURES if with_depth else RAW_IMAGE_FEATURES[:3]
    return {name: tf.io.FixedLenFeature([], tf.string) for name in names}


def decode_batch(encoded, size: int, channels: int, dtype=None):
    """A batch of encoded size x size images -> float64 (B, size, size, C);
    16-bit PNGs keep their full range. The static shape lets TFT describe
    its outputs as fixed-length features."""
    import tensorflow as tf

    def decode(one):
        image = decode_exact(one, channels, dtype)
        return tf.cast(tf.ensure_shape(image, [size, size, channels]), tf.float64)

    return tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
        [size, size, channels], tf.float64))


def standardize_channels(images):
    """Per-channel (x - mean) / std with the mean and std analysed over every
    pixel of the dataset (TFT reduces over the leading axis)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    channels = images.shape[-1]
    pixels = tf.reshape(images, [-1, channels])
    mean = tft.mean(pixels, reduce_instance_dims=False)
    std = tf.sqrt(tft.var(pixels, reduce_instance_dims=False))
    return tf.cast((images - mean) / std, tf.float32)


def make_preprocessing_fn(size: int, depth_encoding: str, depth_scale: float) -> Callable:
    """The TFT preprocessing_fn for a build's image size and depth encoding
    ('none' for composites-only builds)."""

    def preprocessing_fn(inputs):
        import tensorflow as tf

        outputs = {
            "background": standardize_channels(decode_batch(inputs["background"], size, 3)),
            "overlay": standardize_channels(decode_batch(inputs["overlay"], size, 3)),
            "mask": tf.cast(decode_batch(inputs["mask"], size, 1) > 127, tf.float32),
        }
        if depth_encoding == "minmax":
            outputs["depth"] = tf.cast(decode_batch(inputs["depth"], size, 1) / 255.0,
                                       tf.float32)
        elif depth_encoding == "metric":
            depth = decode_batch(inputs["depth"], size, 1, tf.uint16)
            outputs["depth"] = tf.cast(depth / depth_scale, tf.float32)
        return outputs

    return preprocessing_fn


class AnalyzeRecords(beam.PTransform):
    """Serialized tf.train.Examples -> transform_fn in `transform_dir`.

    It runs inside the build's own graph, fed by the TFRecord writer, so the
    whole build is one job (one Dataflow job too). TFT writes the graph with
    TensorFlow's file layer, so `transform_dir` may be local or a real gs://
    bucket, but not a GCS emulator.
    """

    def __init__(self, transform_dir: str, size: int, depth_encoding: str, depth_scale: float,
                 temp_dir: str, batch_size: int):
        super().__init__()
        self._transform_dir = transform_dir
        self._size = size
        self._depth_encoding = depth_encoding
        self._depth_scale = depth_scale
        self._temp_dir = temp_dir
        self._batch_size = batch_size

    def expand(self, examples):
        import tensorflow_transform.beam as tft_beam
        from tensorflow_transform.tf_metadata import schema_utils
        from tfx_bsl.public import tfxio

        schema = schema_utils.schema_from_feature_spec(
            raw_feature_spec(self._depth_encoding != "none"))
        records = tfxio.TFExampleBeamRecord(physical_format="inmem", schema=schema,
                                            telemetry_descriptors=["fgbg"])
        with tft_beam.Context(temp_dir=self._temp_dir, desired_batch_size=self._batch_size):
            transform_fn = (
                (examples | "DecodeRecords" >> records.BeamSource(self._batch_size),
                 records.TensorAdapterConfig())
                | "Analyze" >> tft_beam.AnalyzeDataset(
                    make_preprocessing_fn(self._size, self._depth_encoding,
                                          self._depth_scale)))
            return transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(
                self._transform_dir)
