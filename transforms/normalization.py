"""Normalisation graph: tensorflow-transform over the records as written.

Every record carries its background's and overlay's exact pixel moments
(count, per-channel sums and sums of squares, as written by the pipeline),
and the analysis only sums them (`tft.sum`, int64). Moments add, so the TFRecord
writer hands this stage one moments-only record per shard, holding the sums
over the shard's records (records.moments_example): the analysis reads no
image and holds nothing per sample, yet the mean and std it bakes in are
those of every pixel of the train split's images, the numbers in
stats.json's `splits.train` (`stats.normalization_splits`: every split only
when a build has no train split). Validation and test pixels never shape the
normalisation a model is trained with. It runs in
the same Beam graph and writes `transform/`: a TF graph that decodes a raw
record and outputs model-ready float tensors, with the dataset's mean/std
baked in. Training code applies it with
`tft.TFTransformOutput(path).transform_features_layer()`, so serving and
training normalise identically (see fgbg/training_data.py). Beside the graph
(`transform_fn/`, `transformed_metadata/`) it writes the raw records' schema
where TFX looks for it (`metadata/`), so a TFX trainer's first call,
`TFTransformOutput(path).raw_feature_spec()`, gives the spec that parses the
TFRecords.

TensorFlow-transform writes with TensorFlow's own file layer, which ignores
Beam's options (a GCS emulator among them), so it writes into scratch and the
finished tree is copied into the dataset through Beam's FileSystems
(storage.copy_tree), like every other file of a build.

Outputs of the graph, per sample:
- background, overlay: float32 (H, W, 3), (pixel - channel mean) / channel std
- mask: float32 (H, W, 1) in {0, 1}
- depth (when the build has depth): float32 (H, W, 1); 'minmax': the stored
  0..255 / 255, in [0, 1]; 'metric': metres (stored value / depth_scale, the
  same scale stats.json's mean_unit uses)
"""

from __future__ import annotations

import uuid
from typing import Callable, List, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from fgbg import layout
from fgbg.images import CHANNELS
from fgbg.records import MOMENT_KINDS, decode_exact, moments_feature, raw_feature_spec
from fgbg.storage import copy_tree, delete_files, list_folder
from transforms.stats import normalization_splits


def decode_batch(encoded, size: int, channels: int, dtype=None):
    """A batch of encoded size x size images -> float64 (B, size, size, C);
    16-bit PNGs keep their full range. The static shape lets TFT describe
    its outputs as fixed-length features."""
    import tensorflow as tf

    def decode(one):
        image = decode_exact(one, channels, dtype)
        return tf.cast(tf.ensure_shape(image, [size, size, channels]), tf.float64)

    return tf.map_fn(
        decode, encoded, fn_output_signature=tf.TensorSpec([size, size, channels], tf.float64)
    )


def standardize_channels(images, moments):
    """Per-channel (x - mean) / std, the mean and std analysed from the
    records' pixel moments ([count, sums..., squares...] per image): TFT sums
    them over the dataset, exactly, as int64."""
    import tensorflow as tf
    import tensorflow_transform as tft

    channels = images.shape[-1]
    totals = tf.cast(tft.sum(moments, reduce_instance_dims=False), tf.float64)
    count = totals[0]
    mean = totals[1 : 1 + channels] / count
    std = tf.sqrt(totals[1 + channels :] / count - mean * mean)
    return tf.cast((images - mean) / std, tf.float32)


def make_preprocessing_fn(size: int, depth_encoding: str, depth_scale: float) -> Callable:
    """The TFT preprocessing_fn for a build's image size and depth encoding
    ('none' for composites-only builds)."""

    def preprocessing_fn(inputs):
        import tensorflow as tf

        outputs = {
            kind: standardize_channels(
                decode_batch(inputs[kind], size, CHANNELS[kind]), inputs[moments_feature(kind)]
            )
            for kind in MOMENT_KINDS
        }
        outputs.update(
            {
                "mask": tf.cast(decode_batch(inputs["mask"], size, 1) > 127, tf.float32),
            }
        )
        if depth_encoding == "minmax":
            outputs["depth"] = tf.cast(decode_batch(inputs["depth"], size, 1) / 255.0, tf.float32)
        elif depth_encoding == "metric":
            depth = decode_batch(inputs["depth"], size, 1, tf.uint16)
            outputs["depth"] = tf.cast(depth / depth_scale, tf.float32)
        return outputs

    return preprocessing_fn


def summaries_to_analyze(shards: List[Tuple[str, bytes]]) -> List[bytes]:
    """The moments records, (split, record) per shard, of the splits that set
    the normalisation."""
    chosen = set(normalization_splits(split for split, _ in shards))
    return [summary for split, summary in shards if split in chosen]


def raw_schema(with_depth: bool):
    """The schema of the records as written: what the analysis parses, and
    what TFX trainers read back as the raw feature spec."""
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(raw_feature_spec(with_depth))


def publish_transform(_, scratch: str, transform_dir: str, with_depth: bool) -> str:
    """Add the raw metadata to the tree TFT wrote in `scratch`, copy the tree
    to `transform_dir` through Beam's FileSystems, and delete what else
    `transform_dir` held (an earlier build's graph), as TFT's own writer
    replaces its folders. Returns `transform_dir`."""
    import tensorflow_transform as tft
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(raw_schema(with_depth)),
        FileSystems.join(scratch, tft.TFTransformOutput.RAW_METADATA_DIR),
    )
    copied = set(copy_tree(scratch, transform_dir))
    delete_files(
        [
            layout.resolve(transform_dir, name)
            for name in list_folder(transform_dir)
            if name not in copied
        ]
    )
    return transform_dir


class AnalyzeRecords(beam.PTransform):
    """(split, serialized moments record) per shard -> transform_fn in
    `transform_dir`, from the splits that set the normalisation.

    It runs inside the build's own graph, fed by the TFRecord writer, so the
    whole build is one job (one Dataflow job too). TFT analyses and writes
    under `temp_dir` (with TensorFlow's file layer), in a folder of this
    graph's own; the publishing step then copies the tree into
    `transform_dir`, local or gs://, through Beam's FileSystems. TFT hands
    its SavedModel from step to step by path, so on a multi-worker runner
    `temp_dir` must be shared by the workers (Dataflow: under
    temp_location); local runs give it a local scratch folder.
    """

    def __init__(
        self,
        transform_dir: str,
        size: int,
        depth_encoding: str,
        depth_scale: float,
        temp_dir: str,
        batch_size: int,
    ):
        super().__init__()
        self._transform_dir = transform_dir
        self._size = size
        self._depth_encoding = depth_encoding
        self._depth_scale = depth_scale
        self._temp_dir = temp_dir
        self._batch_size = batch_size

    def expand(self, examples):
        import tensorflow_transform.beam as tft_beam
        from tfx_bsl.public import tfxio

        with_depth = self._depth_encoding != "none"
        records = tfxio.TFExampleBeamRecord(
            physical_format="inmem",
            schema=raw_schema(with_depth),
            telemetry_descriptors=["fgbg"],
        )
        # Two jobs may share a Dataflow temp_location.
        scratch = FileSystems.join(self._temp_dir, f"transform-{uuid.uuid4().hex}")
        chosen = (
            examples
            | "GatherShardSummaries" >> beam.combiners.ToList()
            | "NormalisationSplits" >> beam.FlatMap(summaries_to_analyze)
        )
        with tft_beam.Context(temp_dir=self._temp_dir, desired_batch_size=self._batch_size):
            transform_fn = (
                chosen | "DecodeRecords" >> records.BeamSource(self._batch_size),
                records.TensorAdapterConfig(),
            ) | "Analyze" >> tft_beam.AnalyzeDataset(
                make_preprocessing_fn(self._size, self._depth_encoding, self._depth_scale)
            )
            written = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(scratch)
        return written | "PublishTransform" >> beam.Map(
            publish_transform, scratch, self._transform_dir, with_depth
        )
