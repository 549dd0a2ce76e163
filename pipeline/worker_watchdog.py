"""Fail a local multi-process build whose SDK worker process dies before
it has connected, instead of waiting for ever.

Beam's local runner (2.77) notices a worker's death only when the worker's
data channel breaks, so a worker killed mid-bundle fails the build at once,
but one that dies before connecting (killed at start-up, out of memory
while importing, a crashing `sitecustomize`) leaves the runner polling for
ever. Beam does see that death: the thread that runs each worker process
raises when the process exits non-zero, and nothing reads it. The watchdog
does. It stops the other workers (Beam's cleanup waits for every worker,
and an unconnected one never answers) and interrupts the main thread with a
signal, the one way to raise an exception in it, so the run fails through
Beam's own cleanup with WorkerDied.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from typing import Iterator, List

from fgbg.beam_compat import WORKER_MODULE, WORKER_THREAD_NAME

_INTERRUPT = signal.SIGUSR1
# SIGKILL, as the shell that runs a worker reports it (128 + 9) or Python does.
KILLED = (137, -9)


class WorkerDied(RuntimeError):
    """An SDK worker process of the local multi-process runner died."""


def worker_processes(parent: int) -> List[int]:
    """The SDK worker processes below `parent` (from /proc): each runs
    `python -m WORKER_MODULE` under the shell Beam starts it with."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue  # ended while we looked
        table[int(entry)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), argv)

    def below_parent(pid: int) -> bool:
        while pid in table and pid != parent:
            pid = table[pid][0]
        return pid == parent

    return [
        pid
        for pid, (_, argv) in table.items()
        if WORKER_MODULE.encode() in argv and not argv[0].endswith(b"sh") and below_parent(pid)
    ]


def _why(death: str) -> str:
    """A hint from Beam's `... exited with return code N`."""
    code = re.search(r"return code (-?\d+)", death)
    if code and int(code.group(1)) in KILLED:
        return "it was killed (out of memory? try fewer --direct_num_workers)"
    return "it crashed (--verbose shows its output); the local runner does not retry"


def _stop_workers() -> None:
    for pid in worker_processes(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def failing_on_worker_death() -> Iterator[None]:
    """Within the block, a worker process's death raises WorkerDied in the
    main thread. Off the main thread, or where there is no /proc, the block
    runs unwatched."""
    if threading.current_thread() is not threading.main_thread() or not os.path.isdir("/proc"):
        yield
        return
    deaths: List[str] = []
    raised: List[bool] = []  # WorkerDied is raised once, however many workers die
    lock = threading.Lock()
    previous_hook = threading.excepthook
    main_thread = threading.main_thread().ident

    def on_thread_exception(args) -> None:
        if args.thread is None or args.thread.name != WORKER_THREAD_NAME:
            previous_hook(args)
            return
        with lock:  # workers may die at the same moment
            deaths.append(str(args.exc_value))
            first = len(deaths) == 1
        if first:
            _stop_workers()
            signal.pthread_kill(main_thread, _INTERRUPT)

    def on_interrupt(signum, frame) -> None:
        if deaths and not raised:
            raised.append(True)
            raise WorkerDied(f"an SDK worker process died ({deaths[0]}): {_why(deaths[0])}")

    previous_handler = signal.signal(_INTERRUPT, on_interrupt)
    threading.excepthook = on_thread_exception
    try:
        yield
    finally:
        threading.excepthook = previous_hook
        signal.signal(_INTERRUPT, previous_handler)
