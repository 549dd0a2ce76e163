"""Where the default CPU depth path spends its time, and what the two ways of
doing less arithmetic would give (issue 14).

The roofline (bench_cpu_roofline.py) says 0.8 CPU s per 640x480 image needs
fewer multiply-adds, not faster ones. This measures, in TensorFlow at the
network size on batches of the pipeline's size, on the demo composites with
the seeded weights:

- parts: the encoder alone, the whole default network (the low-resolution
  decoder) and the same without its taps' up-sampling and shifted adds, so
  the decoder's convolutions and its memory-bound tap work each get a figure;
- bf16 in one part of the decoder at a time (the skip half of each convA,
  the taps' 1x1 mixes, convB) and in all of it, the encoder left in fp32:
  CPU s per image and the error against fp32, as bench_depth_cpu.py gives it;
- Winograd F(4x4, 3x3) for the decoder's convB layers (a 3x3 convolution in
  a quarter of the multiplies, in TensorFlow ops, as TensorFlow's CPU
  convolutions run the direct algorithm): CPU s per image against
  tf.nn.conv2d, one layer at a time, and its error against float64.

    python bench/bench_depth_parts.py --name depth_parts
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

BF16_PARTS = ("skip", "mix", "convB")
# Winograd F(4x4, 3x3) with the points 0, 1, -1, 2, -2 and infinity (Lavin and
# Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): input,
# kernel and output transforms.
WINOGRAD_BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float64,
)
WINOGRAD_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float64,
)
WINOGRAD_AT = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    np.float64,
)
TILE = 4  # output pixels per tile side


def cpu_s_per_image(step: Callable[[], object], images: int, repeats: int) -> float:
    """Process CPU seconds per image of `step`, which runs `images` images."""
    return common.cpu_s_per_call(step, repeats) / images


def decoder(network, bf16_parts: Sequence[str], upsample_taps: bool = True):
    """The low-resolution decoder's forward pass (keras_densedepth's
    `LowResolutionDecoder.__call__`, whose weights it reads), with the named
    parts' convolutions in bf16; without `upsample_taps`, each tap's mix is
    computed but not up-sampled and added. `check_mirror` holds the fp32
    version to the real one."""
    import tensorflow as tf

    from fgbg.depth.keras_densedepth import add_tap

    def conv(x, kernel, padding: str, part: str):
        if part not in bf16_parts:
            return tf.nn.conv2d(x, kernel, 1, padding)
        low = tf.nn.conv2d(tf.cast(x, tf.bfloat16), tf.cast(kernel, tf.bfloat16), 1, padding)
        return tf.cast(low, tf.float32)

    def forward(images):
        x, *skips = network.encoder(images, training=False)
        for (kernels, biases, skip_kernel, bias, conv_b, activation), skip in zip(
            network.blocks, skips
        ):
            conv_a = conv(skip, skip_kernel, "SAME", "skip") + bias
            for tap, (kernel, tap_bias) in enumerate(zip(kernels, biases)):
                with tf.control_dependencies([conv_a]):
                    mixed = conv(x, kernel, "VALID", "mix") + tap_bias
                if upsample_taps:
                    conv_a = add_tap(conv_a, mixed, *divmod(tap, 3))
                else:
                    conv_a += tf.reduce_mean(mixed)
            x = activation(conv(conv_a, conv_b.kernel, "SAME", "convB") + conv_b.bias)
        return network.conv3(x)

    return tf.function(forward)


def check_mirror(network, inputs: np.ndarray) -> float:
    """Largest difference between `decoder`'s fp32 pass and the real one;
    fails if they differ beyond fp32 rounding, so the bf16 rows measure the
    network the pipeline runs."""
    import tensorflow as tf

    ours = decoder(network, ())(inputs).numpy()
    real = tf.function(network)(inputs).numpy()
    difference = float(np.abs(ours - real).max())
    if difference > 1e-4 * float(np.abs(real).max()):
        raise RuntimeError(f"the benchmark's decoder differs from the pipeline's by {difference}")
    return difference


def parts(network, inputs: np.ndarray, repeats: int) -> List[Dict[str, object]]:
    """CPU s per image of the encoder, the whole network and the network
    without its taps' up-sampling and shifted adds."""
    import tensorflow as tf

    encoder = tf.function(lambda images: network.encoder(images, training=False))
    steps = (
        ("encoder (DenseNet-169)", encoder),
        ("whole network (low-resolution decoder)", tf.function(network)),
        ("whole network less the taps' up-sampling and shifted adds", decoder(network, (), False)),
    )
    return [
        {"part": name, "cpu_s": cpu_s_per_image(lambda s=step: s(inputs), len(inputs), repeats)}
        for name, step in steps
    ]


def bf16_rows(network, batches: List[np.ndarray], repeats: int) -> List[Dict[str, object]]:
    """Each decoder part in bf16, and all of them, against fp32."""
    from fgbg.depth import maps

    images = sum(len(b) for b in batches)
    rows = []
    reference = None
    for name in ("fp32", *BF16_PARTS, "all"):
        chosen = () if name == "fp32" else BF16_PARTS if name == "all" else (name,)
        forward = decoder(network, chosen)
        outputs: List = []  # the last timed pass's, so the depth costs no extra pass

        def run_all(f=forward, kept=outputs) -> None:
            kept[:] = [f(b) for b in batches]

        cpu_s = cpu_s_per_image(run_all, images, max(1, repeats // 2))
        depth = maps.postprocess(np.concatenate([o.numpy() for o in outputs]))[..., 0]
        reference = depth if reference is None else reference
        rows.append({"bf16": name, "cpu_s": cpu_s, **common.depth_errors(depth, reference)})
    return rows


def winograd_kernel(kernel: np.ndarray) -> np.ndarray:
    """(3, 3, Cin, Cout) -> (36, Cin, Cout): G g G^T for each channel pair,
    row-major over the 6x6 transformed tile."""
    transformed = np.einsum("ia,abcd,jb->ijcd", WINOGRAD_G, kernel.astype(np.float64), WINOGRAD_G)
    return transformed.reshape(36, *kernel.shape[2:]).astype(np.float32)


def _input_transform(d: Sequence) -> List:
    """B^T applied to six slices along one axis, using its zeros and repeats."""
    d0, d1, d2, d3, d4, d5 = d
    a, b = d4 - 4.0 * d2, d3 - 4.0 * d1
    c, e = d4 - d2, 2.0 * (d3 - d1)
    return [4.0 * d0 - 5.0 * d2 + d4, a + b, a - b, c + e, c - e, 4.0 * d1 - 5.0 * d3 + d5]


def _output_transform(m: Sequence) -> List:
    """A^T applied to six slices along one axis."""
    m0, m1, m2, m3, m4, m5 = m
    p, q = m1 + m2, m1 - m2
    r, s = m3 + m4, m3 - m4
    return [m0 + p + r, q + 2.0 * s, p + 4.0 * r, q + 8.0 * s + m5]


def winograd_conv3x3(images, kernel_36):
    """A 'SAME' 3x3 convolution of NHWC `images` by F(4x4, 3x3): overlapping
    6x6 input tiles at a stride of 4, transformed, multiplied as 36 matrix
    products over the channels, transformed back."""
    import tensorflow as tf

    n, height, width, channels = images.shape
    rows, cols = -(-height // TILE), -(-width // TILE)
    out_channels = kernel_36.shape[-1]
    padded = tf.pad(
        images, [[0, 0], [1, TILE * rows + 1 - height], [1, TILE * cols + 1 - width], [0, 0]]
    )
    along_h = _input_transform([padded[:, i : i + TILE * (rows - 1) + 1 : TILE] for i in range(6)])
    tiles = [
        t
        for h in along_h
        for t in _input_transform([h[:, :, j : j + TILE * (cols - 1) + 1 : TILE] for j in range(6)])
    ]
    products = tf.matmul(tf.reshape(tf.stack(tiles), [36, n * rows * cols, channels]), kernel_36)
    products = tf.reshape(products, [6, 6, n, rows, cols, out_channels])
    out_rows = _output_transform([products[i] for i in range(6)])
    out = tf.stack(
        [tf.stack(_output_transform([r[j] for j in range(6)]), axis=3) for r in out_rows], axis=2
    )
    return tf.reshape(out, [n, TILE * rows, TILE * cols, out_channels])[:, :height, :width]


def convb_layers(size: Tuple[int, int]) -> List[Tuple[str, int, int, int]]:
    """(name, channels, height, width) of each up block's convB at network
    input `size` (W, H): up4 works at half the input size, each block
    before it at half the next one's."""
    from fgbg.depth.weight_layout import UP_BLOCKS

    width, height = size
    layers = []
    for depth, block in enumerate(reversed(UP_BLOCKS), start=1):
        h, w = height >> depth, width >> depth
        layers.append(
            (
                f"{block.name} convB 3x3 {block.filters}->{block.filters} at {h}x{w}",
                block.filters,
                h,
                w,
            )
        )
    return layers


def winograd_rows(size: Tuple[int, int], batch: int, repeats: int) -> List[Dict[str, object]]:
    """Direct against Winograd for each up block's convB."""
    import tensorflow as tf

    generator = np.random.default_rng(0)
    rows = []
    for name, c_in, height, width in convb_layers(size):
        c_out = c_in
        images = tf.constant(generator.standard_normal((batch, height, width, c_in), np.float32))
        kernel = generator.standard_normal((3, 3, c_in, c_out)).astype(np.float32)
        kernel /= np.sqrt(9 * c_in)
        direct_kernel = tf.constant(kernel)
        winograd_kernel_36 = tf.constant(winograd_kernel(kernel))
        direct = tf.function(lambda x=images, k=direct_kernel: tf.nn.conv2d(x, k, 1, "SAME"))
        fast = tf.function(lambda x=images, k=winograd_kernel_36: winograd_conv3x3(x, k))
        exact = tf.nn.conv2d(
            tf.cast(images, tf.float64), tf.constant(kernel, tf.float64), 1, "SAME"
        ).numpy()
        scale = float(np.abs(exact).max())
        rows.append(
            {
                "layer": name,
                "direct_cpu_s": cpu_s_per_image(direct, batch, repeats),
                "winograd_cpu_s": cpu_s_per_image(fast, batch, repeats),
                "direct_error": float(np.abs(direct().numpy() - exact).max()) / scale,
                "winograd_error": float(np.abs(fast().numpy() - exact).max()) / scale,
            }
        )
    return rows


def report(argv: Sequence[str], data: Dict, load: float) -> str:
    whole, without_taps = data["parts"][1]["cpu_s"], data["parts"][2]["cpu_s"]
    encoder = data["parts"][0]["cpu_s"]
    lines = [
        common.header(argv, load),
        "",
        f"{data['images']} demo composites at {data['size']}, batches of {data['batch']}, "
        "seeded weights; CPU s per image of this process (all cores' threads).",
        "",
        common.table(
            ["part", "CPU s per image"],
            [[row["part"], f"{row['cpu_s']:.3f}"] for row in data["parts"]],
        ),
        "",
        f"So: encoder {encoder:.3f} s, the decoder's convolutions "
        f"{without_taps - encoder:.3f} s, its taps' up-sampling and shifted adds "
        f"{whole - without_taps:.3f} s (largest difference of the benchmark's decoder from "
        f"the pipeline's: {data['mirror_difference']:.2g}).",
        "",
        common.table(
            ["bf16 in", "CPU s per image", "error vs fp32, m (max / mean)", "within 1 level / max"],
            [
                [
                    row["bf16"],
                    f"{row['cpu_s']:.3f}",
                    f"{row['max_m']:.4f} / {row['mean_m']:.5f}",
                    f"{row['within_1_level']:.2%} / {row['max_levels']}",
                ]
                for row in data["bf16"]
            ],
        ),
        "",
        common.table(
            [
                "layer (batch of the pipeline's size)",
                "tf.nn.conv2d CPU s per image",
                "Winograd F(4x4,3x3)",
                "ratio",
                "max error / max |output| (direct, Winograd)",
            ],
            [
                [
                    row["layer"],
                    f"{row['direct_cpu_s']:.4f}",
                    f"{row['winograd_cpu_s']:.4f}",
                    f"{row['winograd_cpu_s'] / row['direct_cpu_s']:.2f}x",
                    f"{row['direct_error']:.1e}, {row['winograd_error']:.1e}",
                ]
                for row in data["winograd"]
            ],
        ),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8, help="demo composites")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per figure")
    parser.add_argument("--name", default="depth_parts")
    common.add_quiet_options(parser, retries=False)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fgbg.depth import maps
    from fgbg.depth.keras_densedepth import LowResolutionDecoder, build_densedepth
    from pipeline.options import parse_size

    defaults = workload.build_defaults()
    size, batch = parse_size(defaults.depth_input_size), defaults.depth_batch_size
    inputs = np.stack(
        [maps.preprocess(image, size) for image in workload.demo_composites(args.images)]
    )
    batches: List[np.ndarray] = [inputs[i : i + batch] for i in range(0, len(inputs), batch)]
    network = LowResolutionDecoder(build_densedepth(defaults.seed))
    load = common.wait_for_quiet_cpu(args.max_busy)
    data: Dict[str, object] = {
        "images": len(inputs),
        "size": defaults.depth_input_size,
        "batch": batch,
        "mirror_difference": check_mirror(network, batches[0]),
        "parts": parts(network, batches[0], args.repeats),
        "bf16": bf16_rows(network, batches, args.repeats),
        "winograd": winograd_rows(size, batch, args.repeats),
    }
    argv_used = sys.argv if argv is None else [__file__, *argv]
    common.save(args.name, report(argv_used, data, load), {**data, "load": load})
    return 0


if __name__ == "__main__":
    sys.exit(main())
