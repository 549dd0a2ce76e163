"""What the pipeline's stages share, and what is not a stage.

- types, layout, storage, hashing, images, moments, pair_records, records,
  timing, progress, documents: the records that flow between stages, where
  outputs live, file I/O, stable hashes, image bytes, pixel moments, the
  per-pair records that make builds resumable, TFRecord bytes (with the
  vendored Example protos in proto/), stage timers, progress of local runs,
  and the typed JSON documents a build writes;
- depth/: the DenseDepth model (its maps, its TensorFlow runtime, safe
  loading of model files);
- report: the dataset card (report.html, samples.png);
- training_data: readers for training code (tf.data), free of Beam;
- torch_data: the same for PyTorch (the `torch` extra);
- beam_compat: the private Beam APIs fgbg relies on, gathered in one place.

Importing any of these changes nothing in the caller's process.
"""
