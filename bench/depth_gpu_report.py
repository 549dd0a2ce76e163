"""bench/bench_depth_gpu.py's results as a markdown table, each build beside
what the device stand-in predicted for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from bench import common, workload


def _kind(result: Dict) -> str:
    """model, baseline, precision_error, stage or build."""
    return result["measurement"].partition("=")[0]


def rate(result: Dict, count_key: str) -> Optional[float]:
    """Items per second; a stage's model load is left out of its wall time."""
    if "failed" in result:
        return None
    return result[count_key] / (result["wall_s"] - result.get("load_s", 0.0))


def report(
    results: List[Dict],
    environment: Dict,
    argv: Sequence[str],
    predictions: Optional[Dict[str, float]] = None,
) -> str:
    """The results as markdown, each build beside the stand-in's prediction."""
    predictions = predictions or {}
    baseline = next((r for r in results if r["measurement"] == "baseline"), {})
    reference = rate(baseline, "images") if baseline else None
    rows = []
    errors = [r for r in results if _kind(r) == "precision_error" and "failed" not in r]
    for result in results:
        if result in errors:
            continue
        count_key = "samples" if _kind(result) == "build" else "images"
        per_s = rate(result, count_key)
        if per_s is None:
            rows.append([result["measurement"], "failed", *["-"] * 7])
            continue
        count = result[count_key]
        versus = f"{per_s / reference:.2f}x" if reference else "-"
        cells = [f"{per_s:.1f} {count_key}/s", versus, f"{result['cpu_s'] / count:.3f}"]
        cells += [f"{result['peak_rss_mb']:.0f}", _gpu_cell(result), _start_cell(result)]
        predicted = _predicted_cell(result, per_s, predictions)
        rows.append([result["measurement"], *cells, f"{count}", predicted])
    headers = "measurement | rate | vs baseline | CPU s per item | peak RSS MB (measuring "
    headers += "process) | GPU | start (s) | items | stand-in predicted"
    failures = "".join(
        f"\n\n{r['measurement']} failed:\n\n```\n{r['failed']}\n```"
        for r in results
        if "failed" in r
    )
    return (
        common.header(argv)
        + f"\n\nModel: {workload.MODELS[environment['model']]}, seeded untrained weights (the real "
        + f"architecture). Device: {environment['device']}; torch {environment['torch']}; "
        + f"precision {environment['precision']}, batch {environment['batch_size']}, "
        + f"network input {environment['input_size']}"
        + (", torch.compile" if environment["compile"] else "")
        + ".\n\n"
        + common.table(headers, rows)
        + "".join(_error_line(r) for r in errors)
        + failures
    )


def _error_line(result: Dict) -> str:
    return (
        f"\n\n{result['precision']} against fp32 on {result['images']} demo composites: "
        f"depth max {result['max_m']:.4f} m, mean {result['mean_m']:.5f} m; min-max grey "
        f"{100 * result['within_1_level']:.2f}% of pixels within 1 level, "
        f"at most {result['max_levels']} levels."
    )


def _start_cell(result: Dict) -> str:
    """A model's two warm-up calls (cuDNN's search, torch.compile), or a
    stage's slowest model load; left out of the rate."""
    if "warm_up_s" in result:
        return f"warm-up {result['warm_up_s']:.1f}"
    if "load_s" in result:
        return f"load {result['load_s']:.1f}"
    return "-"


def _gpu_cell(result: Dict) -> str:
    parts = []
    if "gpu_busy_pct_mean" in result:
        parts.append(
            f"busy {result['gpu_busy_pct_mean']:.0f}%, {result['gpu_memory_mb_max']:.0f} MiB"
        )
    if "model_call_s" in result:
        parts.append(f"model calls {result['model_call_s']:.1f} s of {result['wall_s']:.1f} s")
    return "; ".join(parts) or "-"


def _predicted_cell(result: Dict, per_s: float, predictions: Dict[str, float]) -> str:
    """The stand-in's samples/s for a build's configuration, and the measured share of it."""
    config = result["measurement"].partition("=")[2].split("/")[0]
    predicted = predictions.get(config) if _kind(result) == "build" else None
    if not predicted:
        return "-"
    return f"{predicted:.1f} samples/s (measured {per_s / predicted:.2f}x)"


def load_predictions(path: Optional[Path]) -> Dict[str, float]:
    """Configuration -> samples/s from a bench_serving.py result file."""
    if path is None:
        return {}
    builds = json.loads(path.read_text())["builds"]
    return {build["config"]: build["samples_s"] for build in builds}
