"""Batches and depth maps between worker processes and the one model they
share (--depth_share_model), through shared memory.

Beam's shared model (RunInference's share_model_across_processes) lives in
one process, and every call from another process pickles its arguments and
result through a socket. Pickled batches of images and maps make that
process spend CPU on every image, under its one GIL, and that cost caps how
fast the model can be fed (BENCHMARKS.md, "Depth on a GPU"). Here only a
block's name and shape cross the socket: the worker writes its batch into a
shared-memory block, the owner reads it in place, runs the model and writes
the maps into a block of its own, which the worker copies out and removes.

The worker removes every block it hands over or takes back (its resource
tracker removes them if it dies); the owner leaves them out of its own
tracker, so that its exit never removes a block a worker still reads.
`SharedMemory` tracks every block a process opens, not only those it
creates, and a process has one tracker, hence `_leave_to_caller`.
"""

from __future__ import annotations

import dataclasses
import os
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Optional, Tuple

import numpy as np

Size = Tuple[int, int]


@dataclasses.dataclass(frozen=True)
class SharedArray:
    """What crosses the socket for an array: its block's name, shape and
    dtype, and the process that removes the block."""

    name: str
    shape: Tuple[int, ...]
    dtype: str
    caller: int  # process id


class SharedMemoryServer:
    """The shared model's face to its callers (held by the owning process):
    arrays in and out through shared memory."""

    def __init__(self, model):
        self._model = model

    def predict_shared(self, images: SharedArray, input_size: Optional[Size]) -> SharedArray:
        """The model's raw output for the batch in `images`, in a new block
        for the caller to copy and remove: `predict_composites` when
        `input_size` is given (uint8 composites, resized on the device),
        else `predict` (images at the network size)."""
        block = _leave_to_caller(SharedMemory(images.name), images.caller)
        try:
            batch = _view(block, images)
            if input_size is None:
                raw = np.asarray(self._model.predict(batch))
            else:
                raw = np.asarray(self._model.predict_composites(batch, input_size))
            del batch
        finally:
            block.close()
        return _copy_for(raw, images.caller)


def predict(server, images: np.ndarray, input_size: Optional[Size]) -> np.ndarray:
    """`server.predict_shared` (a proxy to a `SharedMemoryServer`) for a
    batch, called from a worker process: the maps, copied out of the owner's
    block, which is then removed."""
    block = SharedMemory(create=True, size=max(images.nbytes, 1))
    try:
        shared = SharedArray(block.name, images.shape, images.dtype.str, os.getpid())
        view = _view(block, shared)
        view[...] = images
        del view
        result = server.predict_shared(shared, input_size)
    finally:
        block.close()
        block.unlink()
    out = SharedMemory(result.name)
    try:
        view = _view(out, result)
        maps = view.copy()
        del view
    finally:
        out.close()
        out.unlink()
    return maps


def _view(block: SharedMemory, array: SharedArray) -> np.ndarray:
    return np.ndarray(array.shape, np.dtype(array.dtype), buffer=block.buf)


def _copy_for(array: np.ndarray, caller: int) -> SharedArray:
    """`array` in a new block, for `caller` to copy and remove."""
    array = np.ascontiguousarray(array)
    block = _leave_to_caller(SharedMemory(create=True, size=max(array.nbytes, 1)), caller)
    shared = SharedArray(block.name, array.shape, array.dtype.str, caller)
    view = _view(block, shared)
    view[...] = array
    del view
    block.close()
    return shared


def _leave_to_caller(block: SharedMemory, caller: int) -> SharedMemory:
    """`block`, out of this process's resource tracker unless this process
    is the caller, whose removal of the block unregisters it (Python 3.13's
    `track=False` would say the same, but the workers run 3.10-3.12 too)."""
    if caller != os.getpid():
        resource_tracker.unregister(block._name, "shared_memory")
    return block
