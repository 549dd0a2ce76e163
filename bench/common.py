"""Shared bench helpers: measured subprocesses (the process tree's CPU and
memory), CPU-time helpers, waiting for a quiet machine, results on disk
(the inputs benchmarks run on are bench/workload.py's)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


# --- process-tree monitor ---------------------------------------------------------------


def _children_table() -> Dict[int, List[int]]:
    table: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table.setdefault(int(fields[1]), []).append(int(entry))
    return table


def process_tree(root: int) -> List[int]:
    table = _children_table()
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(table.get(pid, []))
    return tree


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class TreeMonitor:
    """Polls a process and all its descendants (psutil is not installed):
    the peak of the summed RSS over the tree."""

    def __init__(self, pid: int, interval_s: float = 0.1):
        self._pid = pid
        self._interval_s = interval_s
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "TreeMonitor":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = sum(_rss(pid) for pid in process_tree(self._pid))
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(self._interval_s)


def own_cpu_s() -> float:
    """User and system CPU seconds of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_s() -> float:
    """User and system CPU seconds of this process's reaped descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_s() -> float:
    """CPU seconds of this process and its reaped descendants."""
    return own_cpu_s() + children_cpu_s()


def own_peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measured(
    command: Sequence[str],
    log_path: Optional[Path] = None,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout_s: Optional[float] = None,
) -> Dict[str, float]:
    """Run a command to completion; wall s, CPU s of the whole tree (every
    descendant is reaped by its parent, so RUSAGE_CHILDREN includes them),
    peak summed RSS of the tree. Past `timeout_s` the whole tree is killed
    and RuntimeError raised."""
    # Flush earlier runs' dirty pages first, so their write-back does not land
    # in this run's system time (it made identical runs differ by up to 2x).
    os.sync()
    cpu_before = children_cpu_s()
    machine_before = machine_busy_s()
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    start = time.perf_counter()
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd or ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=timeout_s is not None,  # a group to kill on timeout
        )
        with TreeMonitor(process.pid) as monitor:
            code = wait_or_kill_group(process, timeout_s) if timeout_s else process.wait()
    except RuntimeError as error:
        tail = log_path.read_text()[-3000:] if log_path else ""
        raise RuntimeError(f"{' '.join(command)} {error}\n{tail}") from None
    finally:
        if log_path:
            log.close()
    wall = time.perf_counter() - start
    if code != 0:
        tail = log_path.read_text()[-3000:] if log_path else ""
        raise RuntimeError(f"{' '.join(command)} exited {code}\n{tail}")
    cpu = children_cpu_s() - cpu_before
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        # other jobs' CPU during the run: when it is not ~0 the run was disturbed
        "others_cpu_s": max(0.0, machine_busy_s() - machine_before - cpu),
        "peak_rss_mb": monitor.peak_rss / 2**20,
    }


def wait_or_kill_group(process: subprocess.Popen, timeout_s: Optional[float]) -> int:
    """The exit code of `process`, started in a session of its own. Past
    `timeout_s` its whole process group (Beam's worker processes too) is
    killed and RuntimeError raised; so it is when the wait is interrupted
    (Ctrl-C, a signal turned exception), since a session of its own hears
    neither."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise RuntimeError(f"timed out after {timeout_s:.0f} s and was killed") from None
    except BaseException:
        _kill_group(process)
        raise


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# --- the pipeline -----------------------------------------------------------------------

# The local runner by name; a build's default workers (pipeline/local_workers.py).
LOCAL_RUNNER = ("--runner", "FnApiRunner")


def pipeline_command(
    globs: Dict[str, str], output: Path, tft: bool = False, extra: Sequence[str] = ()
) -> List[str]:
    command = [sys.executable, "-m", "pipeline.build", "--bg", globs["bg"], "--fg", globs["fg"]]
    command += ["--fg_mask", globs["fg_mask"], "--output", str(output), "--depth_model", "none"]
    command += ["--no_resume", "--progress_interval_s", "60", *LOCAL_RUNNER]
    if not tft:
        command.append("--no_tft")
    return command + list(extra)


def run_pipeline(
    globs: Dict[str, str],
    output: Path,
    tft: bool = False,
    extra: Sequence[str] = (),
    timeout_s: Optional[float] = None,
) -> Dict[str, object]:
    """One build in a fresh output folder; measurements plus timings.json.
    What came before (the inputs made, an earlier build's output removed) is
    flushed to disk first, so that its writeback is not charged to this build."""
    if output.exists():
        shutil.rmtree(output)
    os.sync()
    output.parent.mkdir(parents=True, exist_ok=True)
    log = output.parent / f"{output.name}.log"
    command = pipeline_command(globs, output, tft, extra)
    measured = run_measured(command, log, timeout_s=timeout_s)
    timings = json.loads((output / "timings.json").read_text())
    manifest = json.loads((output / "manifest.json").read_text())
    measured.update(
        samples=manifest["counts"]["samples"], timings=timings, pipeline_wall_s=timings["wall_s"]
    )
    return measured


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:8]]
    return (sum(values) - values[3] - values[4]) / TICKS  # less idle and iowait


# Measure only when other jobs use fewer cores than this; rerun a measurement
# they disturbed up to this often.
MAX_BUSY = 0.3
RETRIES = 3


def add_quiet_options(parser: argparse.ArgumentParser, retries: bool = True) -> None:
    """--max_busy (and --retries) for a bench script, with the defaults above."""
    parser.add_argument(
        "--max_busy",
        type=float,
        default=MAX_BUSY,
        help="wait until other jobs use fewer cores than this",
    )
    if retries:
        parser.add_argument(
            "--retries",
            type=int,
            default=RETRIES,
            help="rerun a measurement disturbed by other jobs up to this often",
        )


def wait_for_quiet_cpu(max_busy: float = MAX_BUSY, timeout_s: float = 1800.0) -> float:
    """Wait until other jobs on this machine use less than `max_busy` cores
    (measured over 3 s); returns the busy cores when measuring starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = machine_busy_s()
        time.sleep(3.0)
        busy = (machine_busy_s() - before) / 3.0
        if busy < max_busy or time.monotonic() > deadline:
            return busy
        say(f"waiting for a quiet CPU: {busy:.2f} cores busy >= {max_busy}")
        time.sleep(5)


def quietly(
    measure: Callable[[], Dict],
    max_busy: float = MAX_BUSY,
    retries: int = RETRIES,
    tolerance: float = 0.05,
) -> Dict:
    """Run `measure()` (returning a dict with cpu_s and others_cpu_s) when the
    machine is quiet; when other jobs took more than `tolerance` of the CPU it
    used meanwhile, try again (up to `retries` times) and keep the least
    disturbed attempt. The result says how many attempts it took."""
    best = None
    for attempt in range(1, retries + 1):
        wait_for_quiet_cpu(max_busy)
        result = measure()
        result["attempts"] = attempt
        disturbed = result["others_cpu_s"] / max(result["cpu_s"], 1e-9)
        if best is None or disturbed < best["others_cpu_s"] / max(best["cpu_s"], 1e-9):
            best = result
        if disturbed <= tolerance:
            break
        say(f"disturbed: other jobs used {result['others_cpu_s']:.1f} CPU s meanwhile; again")
    return best


def batches(items: Sequence, size: int) -> List:
    """`items` in consecutive slices of `size` (the last one may be shorter)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def say(text: str) -> None:
    """A bench script's progress line, on stderr (stdout carries results)."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def per_sample_ms(seconds: float, samples: int) -> float:
    """Milliseconds per sample."""
    return 1000 * seconds / samples


def marginal_ms(full: float, one: float, n_full: int, n_one: int) -> float:
    """ms per extra sample between a smaller build and a larger one: the
    fixed cost (start-up, worker launch, imports) cancels out."""
    return 1000 * (full - one) / (n_full - n_one)


# --- reporting --------------------------------------------------------------------------


def machine() -> str:
    cores = os.cpu_count()
    memory_gb = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    info: List[str] = []
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    cpu = names[0] if names else "unknown CPU"
    return (
        f"{cores} cores ({cpu}), {memory_gb:.0f} GB RAM, {gpus()}, "
        f"Python {platform.python_version()}"
    )


def gpus() -> str:
    """The GPUs nvidia-smi lists, or "no GPU"."""
    if not shutil.which("nvidia-smi"):
        return "no GPU"
    query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    listed = subprocess.run(query, capture_output=True, text=True, check=False)
    names = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return ", ".join(names) if listed.returncode == 0 and names else "no GPU"


def header(argv: Sequence[str], load: Optional[float] = None) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"Command: `python {shlex.join(argv)}`  \nDate: {now}; machine: {machine()}"
    return text + (f"; other jobs' CPU at start: {load:.2f} cores" if load is not None else "")


def table(headers, rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; `headers` a sequence or one string "a | b | c"."""
    headers = headers.split(" | ") if isinstance(headers, str) else headers
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


RESULT = "RESULT "  # a child measurement's last line: RESULT <json>


def print_result(result: Dict) -> None:
    print(RESULT + json.dumps(result), flush=True)


def child_result(log: Path) -> Dict:
    """The result a child measurement printed last in its log."""
    return child_results(log)[-1]


def child_results(log: Path) -> List[Dict]:
    """Every result a child printed in its log, in order."""
    lines = [line for line in log.read_text().splitlines() if line.startswith(RESULT)]
    return [json.loads(line[len(RESULT) :]) for line in lines]


def doc_parser(doc: str) -> argparse.ArgumentParser:
    """A script's parser: its docstring's first paragraph the description, the rest the epilog."""
    first, _, rest = doc.partition("\n\n")
    return argparse.ArgumentParser(
        description=first, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=rest
    )


def add_output_options(parser: argparse.ArgumentParser, name: str) -> None:
    """--name and --results: where common.save writes."""
    parser.add_argument("--name", default=name, help="results file name, less .md/.json")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for the results")


def save(name: str, markdown: str, data: object, folder: Path = RESULTS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text(markdown + "\n")
    (folder / f"{name}.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(markdown, flush=True)
    print(f"\n[bench] wrote {folder / (name + '.md')} and .json", file=sys.stderr)


def depth_errors(depth: np.ndarray, reference: np.ndarray) -> Dict[str, float]:
    """Error of `depth` against `reference` (both post-processed, units of
    10 m): in metres, and in the min-max grey levels stored at the dataset size."""
    from bench.workload import build_defaults
    from fgbg.depth import maps

    size = (build_defaults().size,) * 2
    metres = np.abs(depth - reference) * maps.METRES_PER_DEPTH_UNIT

    def grey(depths: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(maps.minmax_grey(one, size), np.int16) for one in depths])

    levels = np.abs(grey(depth) - grey(reference))
    return {
        "max_m": float(metres.max()),
        "mean_m": float(metres.mean()),
        "within_1_level": float(np.mean(levels <= 1)),
        "max_levels": int(levels.max()),
    }
