"""The baseline: what the original notebook (Assignment15A_Overlay.ipynb) did.

A single-process PIL loop, re-implemented from the write-up's pseudo code and
../shared/reference/seed-formats.md:

    for each background: resize to 224x224 (Lanczos), save JPEG 60
      for each foreground (+ its mask):
        for flip in (original, mirrored):
          for ratio in 1.0, 0.8, 0.6, 0.4:
            resize fg and mask to (int(w*r), int(h*r)) with Lanczos
            5 times: random x, y in [0, 224 - w), [0, 224 - h)
              overlay = copy of bg, fg pasted at (x, y) with its alpha as paste mask
              mask = black 224x224 L, resized mask pasted with itself as paste mask
              save both as JPEG quality 50
        append the 40 rows to label_data.csv

Foregrounds without a mask file use their alpha channel binarised (every
non-zero value to 255), which is what the original's hand-made masks were.
Nothing here is parallel, seeded per sample or checked: it is the yardstick.

--stats_pass adds the original's separate statistics notebook (~39 min for
400K): every written overlay and mask is read back, and its per-image mean
and std taken with numpy (the original then averaged the means and the stds;
the pipeline's exact pixel moments replace that).

    python bench/baseline_notebook.py --bg 'in/bg/*.jpg' --fg 'in/fg/*.png' \\
        --fg_mask in/fg_mask --output /tmp/baseline
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import time

import numpy as np
from PIL import Image, ImageOps

SIZE = 224
RATIOS = (1.0, 0.8, 0.6, 0.4)
PLACEMENTS = 5


def load_foreground(path: str, mask_dir: str):
    fg = Image.open(path).convert("RGBA")
    mask_path = os.path.join(mask_dir, f"mask_{os.path.basename(path)}")
    if os.path.exists(mask_path):
        mask = Image.open(mask_path).convert("L")
    else:
        alpha = np.asarray(fg.getchannel("A"))
        mask = Image.fromarray(np.where(alpha > 0, 255, 0).astype(np.uint8), "L")
    return fg, mask


def build(bg_glob: str, fg_glob: str, mask_dir: str, output: str, seed: int) -> int:
    np.random.seed(seed)  # the original never seeded; seeded here only so reruns match
    backgrounds = sorted(glob.glob(bg_glob))
    foregrounds = sorted(glob.glob(fg_glob))
    os.makedirs(os.path.join(output, "bg"), exist_ok=True)
    rows = []
    count = 0
    for bg_path in backgrounds:
        bg_stem = os.path.splitext(os.path.basename(bg_path))[0]
        background = Image.open(bg_path).convert("RGB").resize((SIZE, SIZE), Image.LANCZOS)
        background.save(os.path.join(output, "bg", os.path.basename(bg_path)), quality=60)
        for fg_path in foregrounds:
            fg_stem = os.path.splitext(os.path.basename(fg_path))[0]
            fg_image, mask_image = load_foreground(fg_path, mask_dir)
            pair_dir = os.path.join(output, bg_stem, fg_stem)
            os.makedirs(os.path.join(pair_dir, "overlay"), exist_ok=True)
            os.makedirs(os.path.join(pair_dir, "mask"), exist_ok=True)
            number = 0
            for _flip in range(2):
                width, height = fg_image.size
                for ratio in RATIOS:
                    size = (int(width * ratio), int(height * ratio))
                    fg_small = fg_image.resize(size, Image.LANCZOS)
                    mask_small = mask_image.resize(size, Image.LANCZOS)
                    for _ in range(PLACEMENTS):
                        number += 1
                        x = np.random.randint(0, SIZE - size[0])
                        y = np.random.randint(0, SIZE - size[1])
                        overlay = background.copy()
                        overlay.paste(fg_small, (x, y), fg_small)
                        mask = Image.new("L", (SIZE, SIZE))
                        mask.paste(mask_small, (x, y), mask_small)
                        overlay_path = os.path.join(pair_dir, "overlay", f"{number}.jpg")
                        mask_path = os.path.join(pair_dir, "mask", f"{number}.jpg")
                        overlay.save(overlay_path, quality=50)
                        mask.save(mask_path, quality=50)
                        rows.append(
                            [
                                f"Dataset/bg/{bg_stem}.jpg",
                                overlay_path,
                                mask_path,
                                os.path.join(pair_dir, "depth", f"{number}.jpg"),
                            ]
                        )
                        count += 1
                fg_image = ImageOps.mirror(fg_image)
                mask_image = ImageOps.mirror(mask_image)
    with open(os.path.join(output, "label_data.csv"), "w", newline="") as handle:
        csv.writer(handle, delimiter=";", quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
            rows
        )
    return count


def stats_pass(output: str) -> int:
    """The original's mean/std notebook over the written overlays and masks."""
    images = 0
    for kind in ("overlay", "mask"):
        means, stds = [], []
        for path in sorted(glob.glob(os.path.join(output, "*", "*", kind, "*.jpg"))):
            pixels = np.asarray(Image.open(path))
            means.append(pixels.mean(axis=(0, 1)))
            stds.append(pixels.std(axis=(0, 1)))
            images += 1
        print(f"{kind}: mean {np.mean(means, axis=0)}, 'std' {np.mean(stds, axis=0)}")
    return images


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bg", required=True, help="glob of background JPEGs")
    parser.add_argument("--fg", required=True, help="glob of RGBA foreground PNGs")
    parser.add_argument("--fg_mask", required=True, help="folder of mask_<fg name> files")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stats_pass",
        action="store_true",
        help="then the original's per-image mean/std pass over the outputs",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    count = build(args.bg, args.fg, args.fg_mask, args.output, args.seed)
    elapsed = time.perf_counter() - start
    print(f"baseline: {count} composites in {elapsed:.2f} s ({count / elapsed:.1f}/s)")
    if args.stats_pass:
        start = time.perf_counter()
        images = stats_pass(args.output)
        print(f"stats pass: {images} images in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
