"""Depth models apart from Beam: DenseDepth (Alhashim and Wonka, 2018) and
transformers depth-estimation checkpoints (Depth Anything V2, Yang et al., 2024).

- config: the depth stage's configuration (no TensorFlow, no PyTorch);
- models: the model names, runtimes, devices, their messages and
  ModelLoadError (no TensorFlow, no PyTorch);
- maps: network input sizes, DenseDepth's pre/post-processing, what a map
  holds (MapContent) and the depth-map codecs (numpy and Pillow only);
- families: the one interface the stage runs every model through (load,
  pre-process, forward, post-process, what a map holds), and its DenseDepth,
  transformers and ONNX-export families (no TensorFlow, PyTorch or
  transformers);
- checkpoints: transformers checkpoints and their ONNX exports found
  (folder, gs:// or Hub id), described on the launcher and copied on
  workers (no PyTorch);
- image_processor: a checkpoint's image processor (DPT's) before and after
  the network, in numpy and Pillow, for the ONNX runtime;
- first_run: run_local.sh's model when it has none, Depth Anything V2
  Small's ONNX export from the Hugging Face cache;
- shared_memory: batches and maps between worker processes and the one
  model they share, through shared memory (numpy only);
- precision_rule: whether a precision's written depth files are close
  enough to fp32's (numpy and Pillow only);
- precision: which precision each worker runs, `--depth_precision auto`
  resolved against its hardware and the rule's table (no TensorFlow);
- weight_layout: the architecture's numbers, the HDF5 weight-file layout
  and its checks, seeded weights and the low-resolution decoder's tap
  weights, shared by both runtimes (numpy and h5py only);
- keras_densedepth: the architecture in tf_keras, the published weights'
  loader and its low-resolution decoder;
- torch_densedepth: the same in PyTorch;
- safe_loading: the allow-list that model files pass before Keras
  deserialises them;
- tensorflow_runtime, torch_runtime, transformers_runtime, onnx_runtime: a
  loaded model and its forward pass, for the families, with the same names,
  `load_depth_model` and `DepthModel.predict`;
- seeded_checkpoints: Depth Anything V2 checkpoints with seeded weights in
  the published layout, and their ONNX exports, for tests and benchmarks.
"""
