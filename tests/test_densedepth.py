"""DenseDepth: architecture, custom layer, both load paths and safe loading
of user models (pre/post-processing and the encodings: test_depth_maps.py).

No published weights exist here, so the published file's HDF5 layout is made
from a seeded random-weight model of the exact architecture.
"""

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tf_keras

from fgbg.depth import keras_densedepth as kd
from fgbg.depth import models, safe_loading, tensorflow_runtime
from tests.depth_fixtures import (
    aligned_corners_bilinear,
    gcs_emulator,
    random_overlays,
    tiny_depth_model,
    tiny_raw_reference,
    write_published_h5,
)

pytestmark = pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")

SEED = 1234
PROBE_SIZE = 64  # a full-architecture forward pass stays cheap at 64x64


@pytest.fixture(scope="module")
def seeded_model():
    return kd.build_densedepth(seed=SEED)


@pytest.fixture(scope="module")
def probe():
    """Two random RGB inputs in [0, 1] and the in-memory model's raw output."""
    rng = np.random.default_rng(7)
    return rng.random((2, PROBE_SIZE, PROBE_SIZE, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def probe_output(seeded_model, probe):
    return seeded_model.predict_on_batch(probe)


@pytest.fixture(scope="module")
def published_h5(tmp_path_factory):
    """The seeded model saved as nyu.h5 was: a full Keras 2 HDF5 model file
    (173 MB, removed afterwards rather than left in pytest's kept temp dirs)."""
    path = tmp_path_factory.mktemp("published") / "nyu.h5"
    write_published_h5(SEED, str(path))
    yield str(path)
    path.unlink()


# ---------------------------------------------------------------------------
# BilinearUpSampling2D


@pytest.mark.parametrize(
    "shape,size",
    [((2, 3, 5, 4), (2, 2)), ((1, 4, 4, 3), (3, 2)), ((1, 1, 1, 2), (2, 2))],
)
def test_bilinear_upsampling_matches_aligned_corners_reference(shape, size):
    images = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = kd.BilinearUpSampling2D(size)(images).numpy()
    expected = aligned_corners_bilinear(images, shape[1] * size[0], shape[2] * size[1])
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_bilinear_upsampling_known_values():
    """[0, 3] doubled is [0, 1, 2, 3] with aligned corners ([0, .75, 2.25, 3]
    with the half-pixel centres of tf.image.resize)."""
    row = np.array([0.0, 3.0], np.float32).reshape(1, 1, 2, 1)
    out = kd.BilinearUpSampling2D((1, 2))(row).numpy().ravel()
    np.testing.assert_allclose(out, [0, 1, 2, 3], atol=1e-6)


def test_bilinear_upsampling_config_round_trip():
    layer = kd.BilinearUpSampling2D((2, 3), name="up")
    clone = kd.BilinearUpSampling2D.from_config(layer.get_config())
    assert clone.size == (2, 3) and clone.data_format == "channels_last" and clone.name == "up"


def test_bilinear_upsampling_refuses_channels_first():
    with pytest.raises(ValueError, match="channels_last"):
        kd.BilinearUpSampling2D(data_format="channels_first")


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 1, 2), (1, 1, 6, 3), (3, 15, 20, 8)])
def test_upsampling_by_gathers_is_the_resize_op_bit_for_bit(shape):
    """The low-resolution decoder's taps up-sample with gathers (so XLA can
    fuse them); that must be the very function of the resize op, down to the
    last bit, one-pixel sides included."""
    images = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    expected = kd.upsample_aligned(images, (2, 2)).numpy()
    np.testing.assert_array_equal(kd.upsample2_aligned_by_gathers(images).numpy(), expected)


@pytest.mark.parametrize("ky, kx", [(0, 0), (1, 2), (2, 1)])
def test_a_tap_compiled_by_xla_adds_its_shifted_upsampled_mix(ky, kx):
    """`add_tap` (XLA) against the same sum written out: the mix doubled in
    size, moved by (ky - 1, kx - 1) with zeros coming in, added."""
    rng = np.random.default_rng(ky * 3 + kx)
    mixed = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    total = rng.normal(size=(2, 8, 10, 3)).astype(np.float32)
    upsampled = np.pad(kd.upsample_aligned(mixed, (2, 2)).numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)])
    expected = total + upsampled[:, ky : ky + 8, kx : kx + 10]
    got = kd.add_tap(total, mixed, *kd.tap_offsets(3 * ky + kx)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_the_nine_taps_of_a_shape_share_one_trace():
    """The offsets are tensors, so a block's nine taps trace (and XLA
    compiles) `add_tap` once, not nine times; a shape no other test uses."""
    rng = np.random.default_rng(9)
    mixed = rng.normal(size=(1, 3, 7, 2)).astype(np.float32)
    total = rng.normal(size=(1, 6, 14, 2)).astype(np.float32)
    before = kd.add_tap.experimental_get_tracing_count()
    sums = [kd.add_tap(total, mixed, *kd.tap_offsets(tap)).numpy() for tap in range(9)]
    assert kd.add_tap.experimental_get_tracing_count() - before == 1
    assert len({value.tobytes() for value in sums}) == 9


def test_layers_built_under_zero_initial_values_start_at_zero():
    """What `build_densedepth` builds its layers under: every variable of
    known shape starts at zero, not at its initialiser's random draw."""
    import tensorflow as tf

    with tf.variable_creator_scope(kd.zero_initial_values):
        layer = tf_keras.layers.Conv2D(4, 3, bias_initializer="ones")
        layer.build((None, 8, 8, 2))
    assert [tuple(v.shape) for v in layer.weights] == [(3, 3, 2, 4), (4,)]
    assert not any(np.any(v.numpy()) for v in layer.weights)


# ---------------------------------------------------------------------------
# Architecture


def _conv_params(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


@pytest.mark.model
def test_architecture_matches_published_layout(seeded_model):
    """Layer names, skip widths and decoder size as the published weights expect."""
    layers = {layer.name: layer for layer in seeded_model.layers}
    decoder = ["conv2", "conv3"] + [
        f"up{i}_{part}"
        for i in range(1, 5)
        for part in ("upsampling2d", "concat", "convA", "convB")
    ]
    assert set(decoder) <= set(layers)
    assert isinstance(layers["up1_upsampling2d"], kd.BilinearUpSampling2D)
    assert layers["conv2"].kernel.shape == (1, 1, 1664, 1664)
    # One LeakyReLU per up block, after convB.
    leaky = [layer for layer in seeded_model.layers if isinstance(layer, tf_keras.layers.LeakyReLU)]
    assert len(leaky) == 4
    assert all(layer._inbound_nodes[0].inbound_layers.name.endswith("_convB") for layer in leaky)
    # Skip connections: (filters, skip channels) per block.
    skips = {"up1": (832, 256), "up2": (416, 128), "up3": (208, 64), "up4": (104, 64)}
    c_in = 1664
    decoder_params = _conv_params(1, 1664, 1664) + _conv_params(3, 104, 1)
    for name, (filters, skip) in skips.items():
        assert layers[f"{name}_convA"].kernel.shape == (3, 3, c_in + skip, filters)
        decoder_params += _conv_params(3, c_in + skip, filters) + _conv_params(3, filters, filters)
        c_in = filters
    decoder_weights = sum(
        int(np.prod(w.shape)) for n in decoder if layers[n].weights for w in layers[n].weights
    )
    assert decoder_weights == decoder_params == 30_173_209
    assert seeded_model.count_params() == 42_816_089


@pytest.mark.model
def test_output_is_half_resolution_and_finite(probe_output):
    assert probe_output.shape == (2, PROBE_SIZE // 2, PROBE_SIZE // 2, 1)
    assert np.isfinite(probe_output).all()
    assert probe_output.std() > 0


@pytest.mark.model
def test_the_low_resolution_decoder_computes_the_same_function(seeded_model, probe, probe_output):
    """What the runtime runs for DenseDepth (kd.LowResolutionDecoder)
    against the Keras model as written."""
    low = kd.LowResolutionDecoder(seeded_model)(probe).numpy()
    np.testing.assert_allclose(low, probe_output, rtol=1e-4, atol=1e-5)


@pytest.mark.model
def test_untrained_model_is_reproducible_from_its_seed(seeded_model, probe, probe_output):
    rebuilt = tensorflow_runtime.load_keras_model("untrained", None, SEED)
    np.testing.assert_array_equal(
        rebuilt.get_layer("conv3").kernel.numpy(), seeded_model.get_layer("conv3").kernel.numpy()
    )
    np.testing.assert_allclose(rebuilt.predict_on_batch(probe), probe_output, atol=1e-5)
    kd.fill_seeded_weights(rebuilt, SEED + 1)
    assert not np.allclose(
        rebuilt.get_layer("conv3").kernel.numpy(), seeded_model.get_layer("conv3").kernel.numpy()
    )


# ---------------------------------------------------------------------------
# Loading the published file, both ways


@pytest.mark.model
def test_fixture_has_the_published_hdf5_layout(published_h5):
    with h5py.File(published_h5, "r") as h5:
        assert "model_config" in h5.attrs
        group = h5["model_weights"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
        assert "conv1/conv" in names and "up4_convB" in names
        assert group["conv1/conv/conv1/conv/kernel:0"].shape == (7, 7, 3, 64)
        assert group["conv2/conv2/kernel:0"].shape == (1, 1, 1664, 1664)


@pytest.mark.model
def test_copy_by_name_reproduces_the_model(published_h5, probe, probe_output):
    model = tensorflow_runtime.load_keras_model("densedepth", published_h5, seed=0)
    np.testing.assert_allclose(model.predict_on_batch(probe), probe_output, rtol=1e-5, atol=1e-5)


@pytest.mark.model
def test_load_model_path_reproduces_the_model(published_h5, probe, probe_output):
    model = tensorflow_runtime.load_keras_model(published_h5, None, seed=0)
    np.testing.assert_allclose(model.predict_on_batch(probe), probe_output, rtol=1e-5, atol=1e-5)


def _renamed_layer(h5):
    group = h5["model_weights"]
    group.move("conv3", "conv3_renamed")
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
    group.attrs["layer_names"] = [("conv3_renamed" if n == "conv3" else n).encode() for n in names]


def _reshaped_layer(h5):
    layer = h5["model_weights/conv3"]
    del layer["conv3/kernel:0"]
    layer.create_dataset("conv3/kernel:0", data=np.zeros((3, 3, 104, 2), np.float32))


@pytest.mark.parametrize(
    "mutate,message", [(_renamed_layer, r"'conv3'"), (_reshaped_layer, r"(?i)conv3.*shape")]
)
@pytest.mark.model
@pytest.mark.parametrize("load", ["copy_by_name", "load_model", "torch"])
def test_mismatched_file_fails_naming_the_layer(published_h5, tmp_path, mutate, message, load):
    """Both runtimes check the file the same way (fgbg/depth/weight_layout.py)."""
    path = tmp_path / "nyu.h5"
    shutil.copyfile(published_h5, path)
    with h5py.File(path, "r+") as h5:
        mutate(h5)
    try:
        with pytest.raises(models.ModelLoadError, match=message):
            if load == "copy_by_name":
                tensorflow_runtime.load_keras_model("densedepth", str(path), seed=0)
            elif load == "load_model":
                tensorflow_runtime.load_keras_model(str(path), None, seed=0)
            else:
                pytest.importorskip("torch")
                from fgbg.depth import torch_runtime

                torch_runtime.load_network("densedepth", str(path), seed=0)
    finally:
        path.unlink()


def test_missing_weights_say_where_the_file_comes_from():
    with pytest.raises(models.ModelLoadError) as error:
        tensorflow_runtime.load_keras_model("densedepth", None, seed=0)
    message = str(error.value)
    for needle in (
        "ialhashim/DenseDepth",
        "nyu.h5",
        "--depth_weights",
        "--depth_model untrained",
        "--depth_model none",
    ):
        assert needle in message


def test_missing_files_and_none_are_refused(tmp_path):
    with pytest.raises(models.ModelLoadError, match="not found"):
        tensorflow_runtime.load_keras_model("densedepth", str(tmp_path / "nyu.h5"), seed=0)
    with pytest.raises(models.ModelLoadError, match="not found"):
        tensorflow_runtime.load_keras_model(str(tmp_path / "model.keras"), None, seed=0)
    with pytest.raises(models.ModelLoadError, match="none"):
        tensorflow_runtime.load_keras_model("none", None, seed=0)


# ---------------------------------------------------------------------------
# User models: any Keras file or SavedModel with the same contract, loaded safely


def _tiny_probe():
    return np.stack(random_overlays(2, 8, seed=3)).astype(np.float32) / 255.0


@pytest.mark.parametrize("name", ["tiny.h5", "tiny.keras", "tiny_savedmodel"])
def test_user_model_formats_load_and_keep_their_outputs(tmp_path, name):
    path = str(tmp_path / name)
    tiny_depth_model().save(path)
    model = tensorflow_runtime.load_keras_model(path, None, seed=0)
    images = _tiny_probe()
    np.testing.assert_allclose(
        model.predict_on_batch(images)[..., 0], tiny_raw_reference(images), rtol=1e-5
    )


@pytest.mark.gcs
def test_models_load_from_gcs(tmp_path, monkeypatch):
    """gs:// files and SavedModel directories are fetched through Beam's FileSystems."""
    h5_path = str(tmp_path / "tiny.h5")
    saved_model = tmp_path / "saved"
    tiny_depth_model().save(h5_path)
    tiny_depth_model().save(str(saved_model))
    with gcs_emulator(monkeypatch, "models") as bucket:
        bucket.blob("depth/tiny.h5").upload_from_filename(h5_path)
        for file in saved_model.rglob("*"):
            if file.is_file():
                bucket.blob(f"depth/saved/{file.relative_to(saved_model)}").upload_from_filename(
                    str(file)
                )
        images = _tiny_probe()
        for uri in ("gs://models/depth/tiny.h5", "gs://models/depth/saved"):
            model = tensorflow_runtime.load_keras_model(uri, None, seed=0)
            np.testing.assert_allclose(
                model.predict_on_batch(images)[..., 0], tiny_raw_reference(images), rtol=1e-5
            )
        with pytest.raises(models.ModelLoadError, match="not found"):
            tensorflow_runtime.load_keras_model("densedepth", "gs://models/depth/nyu.h5", seed=0)


def _lambda_model():
    inputs = tf_keras.Input((None, None, 3))
    scaled = tf_keras.layers.Lambda(lambda x: x * 2.0, name="sneaky")(inputs)
    return tf_keras.Model(inputs, tf_keras.layers.Conv2D(1, 1)(scaled))


class _UnknownLayer(tf_keras.layers.Layer):
    def call(self, inputs):
        return inputs


def _custom_layer_model():
    inputs = tf_keras.Input((None, None, 3))
    custom = _UnknownLayer(name="mystery")(inputs)
    return tf_keras.Model(inputs, tf_keras.layers.Conv2D(1, 1)(custom))


@pytest.mark.parametrize("name", ["evil.h5", "evil.keras", "evil_savedmodel"])
def test_lambda_layers_are_refused_before_deserializing(tmp_path, name):
    path = str(tmp_path / name)
    _lambda_model().save(path)
    with pytest.raises(models.ModelLoadError, match=r"evil.*'sneaky'.*'Lambda'"):
        tensorflow_runtime.load_keras_model(path, None, seed=0)


@pytest.mark.parametrize("name", ["custom.h5", "custom.keras"])
def test_unknown_custom_objects_are_refused(tmp_path, name):
    path = str(tmp_path / name)
    _custom_layer_model().save(path)
    with pytest.raises(models.ModelLoadError, match=r"custom.*'mystery'.*'_UnknownLayer'"):
        tensorflow_runtime.load_keras_model(path, None, seed=0)


def test_config_naming_code_outside_keras_is_refused():
    foreign_module = {"class_name": "Conv2D", "module": "os", "config": {"name": "c"}}
    with pytest.raises(models.ModelLoadError, match="module 'os'"):
        safe_loading.check_config_is_safe(
            {"class_name": "Functional", "config": {"layers": [foreign_module]}}, "m.keras"
        )
    function = {
        "class_name": "Activation",
        "config": {
            "name": "a",
            "activation": {"module": "builtins", "class_name": "function", "config": "eval"},
        },
    }
    with pytest.raises(models.ModelLoadError, match="'eval'"):
        safe_loading.check_config_is_safe(function, "m.keras")
    relu = {
        "class_name": "Activation",
        "config": {
            "name": "a",
            "activation": {"module": "builtins", "class_name": "function", "config": "relu"},
        },
    }
    safe_loading.check_config_is_safe(relu, "m.keras")


def test_weights_only_file_is_refused_with_a_hint(tmp_path):
    path = str(tmp_path / "weights.h5")
    tiny_depth_model().save_weights(path)
    with pytest.raises(models.ModelLoadError, match="weights only.*--depth_weights"):
        tensorflow_runtime.load_keras_model(path, None, seed=0)


def test_keras_archive_config_is_checked_before_keras_reads_it(tmp_path):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "config.json", json.dumps({"class_name": "Lambda", "config": {"name": "x"}})
        )
    with pytest.raises(models.ModelLoadError, match="'Lambda'"):
        tensorflow_runtime.load_keras_model(str(path), None, seed=0)


def test_a_truncated_weights_file_is_refused_naming_it(published_h5, tmp_path):
    """Faults a real build meets: a download cut short."""
    truncated = tmp_path / "nyu.h5"
    data = Path(published_h5).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(models.ModelLoadError, match=rf"{truncated}: not a readable model file"):
        tensorflow_runtime.load_keras_model("densedepth", str(truncated), seed=0)


def test_nan_weights_are_refused_naming_the_file_and_weight(tmp_path):
    model = tiny_depth_model()
    kernel = model.get_layer("depth").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    path = tmp_path / "nan.h5"
    model.save(path)
    with pytest.raises(models.ModelLoadError, match=rf"{path}: weight '.*kernel.*' holds NaN"):
        tensorflow_runtime.load_keras_model(str(path), None, seed=0)
