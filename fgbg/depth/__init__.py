"""DenseDepth (Alhashim and Wonka, 2018) apart from Beam.

- config: the depth stage's configuration (no TensorFlow, no PyTorch);
- models: the model names, runtimes, devices, their messages and
  ModelLoadError (no TensorFlow, no PyTorch);
- maps: network input sizes, pre/post-processing and the depth-map codecs
  (numpy and Pillow only);
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
- tensorflow_runtime, torch_runtime: a loaded model and its forward pass,
  for the depth stage (transforms/depth.py), with the same two names,
  `load_depth_model` and `DepthModel.predict`.
"""
