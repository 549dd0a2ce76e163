"""What the pipeline's stages share, and what is not a stage.

- types, layout, storage, hashing, images, moments, pair_records, records,
  timing, progress, documents, lease: the records that flow between
  stages, where outputs live, file I/O, stable hashes, image bytes, pixel
  moments, the files that make builds resumable (a pair's row files and
  record, and every read, write and delete of them), TFRecord bytes (with
  the vendored Example protos in proto/), stage timers, progress of local
  runs, the typed JSON documents a build writes, and the output's lease
  (one build per output);
- depth/: the DenseDepth model (its maps, both runtimes, safe loading of
  model files; its own docstring lists them);
- report/: the dataset card (report.html, samples.png): the dataset it
  reads, the sample grid, the histograms, and the page with its template;
- training_data: readers for training code (tf.data), free of Beam;
- torch_data: the same for PyTorch (the `torch` extra);
- beam_compat: the private Beam APIs fgbg relies on, gathered in one place;
- import_order: triton loaded before TensorFlow, which the other order
  crashes (tensorflow/tensorflow#124205).

Importing any of these changes nothing in the caller's process, except
worker_start, whose whole job is what its import does: each Beam SDK worker
of a build with depth on torch imports it first (--beam_plugins) to load
triton before TensorFlow.
"""
