"""DenseDepth (Alhashim and Wonka, 2018) apart from Beam.

- models: the model names, their messages and ModelLoadError (no TensorFlow);
- maps: network input sizes, pre/post-processing and the depth-map codecs
  (numpy and Pillow only);
- keras_densedepth: the architecture in tf_keras and the published weights'
  loader;
- safe_loading: the allow-list that model files pass before Keras
  deserialises them;
- tensorflow_runtime: a loaded model and its forward pass, for the depth
  stage (transforms/depth.py). A second runtime is one more module with the
  same two names, `load_depth_model` and `DepthModel.predict`.
"""
