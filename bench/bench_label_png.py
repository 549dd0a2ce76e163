"""Composed metric labels as 16-bit PNGs: Pillow's encoder (what labels were
written with before) against `fgbg.images.encode_png_fast` (OpenCV), time
and bytes per label, on three kinds of 224x224 label: bench_scene.py's
rooms (a floor and a wall, rows of one depth) with an object pasted in; the
same with a sensor's noise (+-4 mm) and holes (5% unmeasured); and a smooth
surface that varies along both axes, as a model's map does.

    python bench/bench_label_png.py
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.bench_scene import room_depth  # noqa: E402
from fgbg.images import encode_png_fast  # noqa: E402

SIZE = 224


def room_labels(count: int, rng: np.random.Generator) -> List[np.ndarray]:
    """Rooms pitched 5 to 25 degrees, each with an object's box at its foot depth."""
    labels = []
    for index in range(count):
        label = room_depth(SIZE, SIZE, 5 + 20 * (index % 5) / 4)
        w, h = rng.integers(20, 120, size=2)
        x, y = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
        label[y : y + h, x : x + w] = label[y + h - 1, x + w // 2]
        labels.append(label)
    return labels


def noisy(labels: List[np.ndarray], rng: np.random.Generator) -> List[np.ndarray]:
    out = []
    for label in labels:
        values = label.astype(np.int32) + rng.integers(-4, 5, label.shape)
        values[rng.random(label.shape) < 0.05] = 0
        out.append(np.clip(values, 0, 65535).astype(np.uint16))
    return out


def smooth(count: int) -> List[np.ndarray]:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return [
        np.rint(
            1500 + 8 * rows + 3 * cols + 200 * np.sin(cols / 17 + i) * np.cos(rows / 23)
        ).astype(np.uint16)
        for i in range(count)
    ]


def encode_pillow(label: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(label).save(buffer, format="PNG")
    return buffer.getvalue()


def measure(encode: Callable[[np.ndarray], bytes], labels: List[np.ndarray]) -> Dict:
    """Best of 3 passes: CPU ms and bytes per label."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        sizes = [len(encode(label)) for label in labels]
        best = min(best, time.process_time() - start)
    return {"ms": 1000 * best / len(labels), "bytes": float(np.mean(sizes))}


def main(argv=None) -> int:
    parser = common.doc_parser(__doc__)
    parser.add_argument("--labels", type=int, default=100, help="labels of each kind")
    common.add_output_options(parser, "label_png")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rooms = room_labels(args.labels, rng)
    kinds = {"rooms": rooms, "rooms, noisy": noisy(rooms, rng), "smooth": smooth(args.labels)}
    results = {
        kind: {"pillow": measure(encode_pillow, labels), "opencv": measure(encode_png_fast, labels)}
        for kind, labels in kinds.items()
    }
    rows = [
        [kind, f"{r['pillow']['ms']:.2f}", f"{r['opencv']['ms']:.2f}"]
        + [f"{r['pillow']['bytes']:.0f}", f"{r['opencv']['bytes']:.0f}"]
        + [f"{r['opencv']['bytes'] / r['pillow']['bytes']:.2f}"]
        for kind, r in results.items()
    ]
    lines = [
        common.header(sys.argv if argv is None else ["bench/bench_label_png.py", *argv]),
        "",
        common.table(
            "label | Pillow ms | OpenCV ms | Pillow bytes | OpenCV bytes | bytes, OpenCV / Pillow",
            rows,
        ),
    ]
    common.save(args.name, "\n".join(lines), results, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
