"""How close the CPU depth path already runs to this core's fp32 rate (issue 14).

Issue 14 asks for at most 0.8 CPU s per 640x480 image at fp32 accuracy. This
says whether that is a matter of running the same arithmetic faster or of
doing less of it:

- the network's multiply-adds per image at the network size, as written and
  with the low-resolution decoder (PyTorch's FlopCounterMode on the torch
  DenseDepth, which is the Keras network layer for layer);
- the best rate this core reaches on the convolutions that carry most of
  them, in TensorFlow (oneDNN, NHWC, one intra-op thread, batch 4; GMAC per
  CPU second), and on a plain fp32 matrix product;
- the depth paths' measured CPU s per image (from bench_depth_cpu.py's
  results), turned into GMAC per CPU second and into the multiply-adds that
  0.8 CPU s allows at the best convolution rate.

    python bench/bench_cpu_roofline.py --name cpu_roofline
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common, workload  # noqa: E402

TARGET_CPU_S = 0.8  # issue 14's target per 640x480 image
BATCH = 4
# (name, input channels, output channels, kernel, height, width): the
# decoder's full-resolution convB layers (30 of the ~77 GMAC), and a dense
# layer's 1x1 and 3x3 of encoder block 1.
CONVOLUTIONS: Tuple[Tuple[str, int, int, int, int, int], ...] = (
    ("up4 convB 3x3 104->104 at 240x320", 104, 104, 3, 240, 320),
    ("up3 convB 3x3 208->208 at 120x160", 208, 208, 3, 120, 160),
    ("up2 convB 3x3 416->416 at 60x80", 416, 416, 3, 60, 80),
    ("block1 1x1 160->128 at 120x160", 160, 128, 1, 120, 160),
    ("block1 3x3 128->32 at 120x160", 128, 32, 3, 120, 160),
)


def network_gmac(size: Tuple[int, int]) -> Dict[str, float]:
    """Multiply-adds per image of the network as written and with the
    low-resolution decoder, at (W, H)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fgbg.depth import torch_densedepth

    network = torch_densedepth.build_densedepth(0).eval()
    image = torch.zeros(1, 3, size[1], size[0])
    counts = {}
    for name, module in (
        ("written", network),
        ("low_resolution", torch_densedepth.LowResolutionDecoder(network).eval()),
    ):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(image)
        counts[name] = counter.get_total_flops() / 2e9
    return counts


def rate(step, macs: float, repeats: int = 5) -> float:
    """GMAC per CPU second of `step` (after two warm-up calls)."""
    return macs / common.cpu_s_per_call(step, repeats, warmups=2) / 1e9


def core_rates() -> List[Dict[str, object]]:
    """This core's fp32 rate on the network's commonest convolutions and on
    a matrix product, one thread, in TensorFlow."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    generator = tf.random.Generator.from_seed(0)
    rows = []
    for name, c_in, c_out, kernel, height, width in CONVOLUTIONS:
        images = generator.normal((BATCH, height, width, c_in))
        weights = generator.normal((kernel, kernel, c_in, c_out))
        conv = tf.function(lambda x=images, w=weights: tf.nn.conv2d(x, w, 1, "SAME"))
        macs = BATCH * height * width * c_in * c_out * kernel * kernel
        rows.append({"operation": name, "gmac_per_cpu_s": rate(conv, macs)})
    a, b = generator.normal((2048, 2048)), generator.normal((2048, 2048))
    product = tf.function(lambda: tf.linalg.matmul(a, b))
    rows.append({"operation": "matmul 2048x2048", "gmac_per_cpu_s": rate(product, 2048**3)})
    return rows


def measured_paths(results: Path) -> Dict[str, float]:
    """CPU s per image of each path bench_depth_cpu.py measured (skipped
    and failed paths have none)."""
    return {
        r["path"]: r["cpu_s"] / r["images"] for r in json.loads(results.read_text()) if "cpu_s" in r
    }


def runs_as_written(path: str) -> bool:
    """Whether a bench_depth_cpu.py path runs the network as written: its
    "written" variants, and OpenVINO, which converts the Keras model as
    written; the others run the low-resolution decoder."""
    return "written" in path or path.startswith("openvino")


def report(
    argv: List[str], gmac: Dict[str, float], rates: List[Dict[str, object]], paths: Dict
) -> str:
    best = max(float(r["gmac_per_cpu_s"]) for r in rates if "conv" in str(r["operation"]))
    lines = [
        common.header(argv),
        "",
        f"Network multiply-adds per image at the default network size: "
        f"{gmac['written']:.1f} GMAC as written, "
        f"{gmac['low_resolution']:.1f} with the low-resolution decoder.",
        "",
        common.table(
            ["operation (TensorFlow, 1 thread, fp32)", "GMAC per CPU s"],
            [[r["operation"], f"{r['gmac_per_cpu_s']:.1f}"] for r in rates],
        ),
        "",
    ]
    rows = []
    for path, cpu_s in paths.items():
        macs = gmac["written"] if runs_as_written(path) else gmac["low_resolution"]
        rows.append([path, f"{cpu_s:.3f}", f"{macs / cpu_s:.1f}", f"{macs / cpu_s / best:.0%}"])
    if rows:
        lines += [
            common.table(
                [
                    "path",
                    "CPU s per image",
                    "GMAC per CPU s",
                    "share of the best fp32 convolution rate",
                ],
                rows,
            ),
            "",
        ]
    lines.append(
        f"At the best convolution rate ({best:.1f} GMAC per CPU s), {TARGET_CPU_S} CPU s "
        f"allows {best * TARGET_CPU_S:.1f} GMAC per image, "
        f"{best * TARGET_CPU_S / gmac['low_resolution']:.0%} of the low-resolution path's; "
        f"its {gmac['low_resolution']:.1f} GMAC take at least "
        f"{gmac['low_resolution'] / best:.2f} CPU s."
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--depth_cpu_results",
        type=Path,
        default=common.RESULTS / "depth_cpu.json",
        help="bench_depth_cpu.py's JSON (its paths' CPU s per image)",
    )
    parser.add_argument("--name", default="cpu_roofline")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline.options import parse_size

    gmac = network_gmac(parse_size(workload.build_defaults().depth_input_size))
    rates = core_rates()
    paths = measured_paths(args.depth_cpu_results) if args.depth_cpu_results.exists() else {}
    argv_used = sys.argv if argv is None else [__file__, *argv]
    data = {"gmac_per_image": gmac, "rates": rates, "cpu_s_per_image": paths}
    common.save(args.name, report(argv_used, gmac, rates, paths), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
