"""The depth runtime's threads per process (fgbg/depth/thread_budget.py):
the rule as a pure function, and the runtimes' hooks in a fresh process."""

import json
import subprocess
import sys

import pytest

from fgbg.depth import thread_budget
from fgbg.depth.thread_budget import ThreadBudget, local_budget, remote_budget, threads_per_process


@pytest.mark.parametrize(
    "cores, processes, shared, expected",
    [
        (2, 2, False, 1),  # a worker per core: one thread each
        (2, 1, False, 2),  # one process has the machine
        (16, 16, False, 1),
        (16, 4, False, 4),
        (16, 3, False, 5),  # the remainder is left to the launcher's own work
        (2, 4, False, 1),  # more processes than cores: still at least one
        (0, 0, False, 1),  # nonsense counts: at least one
        (2, 2, True, 1),  # shared model: the cores the other process leaves it
        (16, 4, True, 13),
        (16, 16, True, 1),
        (16, 1, True, 16),
    ],
)
def test_each_process_gets_its_share_of_the_cores(cores, processes, shared, expected):
    assert threads_per_process(cores, processes, shared) == expected


def test_a_named_count_wins_over_the_rule():
    assert local_budget(16, 16, False, named=3) == ThreadBudget(3, 16, 16, False, named=True)
    assert local_budget(16, 16, False).per_process == 1


def test_one_process_keeps_the_runtimes_default_unless_a_count_is_named():
    assert local_budget(2, 1, False).threads_to_set is None
    assert local_budget(2, 1, False, named=1).threads_to_set == 1
    assert local_budget(2, 2, False).threads_to_set == 1


def test_dataflow_workers_get_one_thread_per_sdk_process():
    per_vcpu = remote_budget(process_per_core=True, shared_model=False)
    assert (per_vcpu.per_process, per_vcpu.threads_to_set) == (1, 1)
    assert remote_budget(True, shared_model=True).threads_to_set == 1
    one_process = remote_budget(process_per_core=False, shared_model=False)
    assert (one_process.per_process, one_process.threads_to_set) == (None, None)
    assert remote_budget(False, False, named=4).threads_to_set == 4


def test_the_budget_is_recorded_as_json():
    recorded = local_budget(2, 2, True).to_json()
    assert json.loads(json.dumps(recorded)) == recorded
    assert ThreadBudget(**recorded) == local_budget(2, 2, True)


_HOOKS = """
import json, sys
from fgbg.depth import thread_budget
thread_budget.apply_torch(1)
thread_budget.apply_tensorflow(1)
import tensorflow as tf, torch
tf.constant(1.0) + 1  # TensorFlow's context starts with the counts set
thread_budget.apply_tensorflow(2)  # too late: kept, with a warning
print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads(),
                  tf.config.threading.get_intra_op_parallelism_threads(),
                  tf.config.threading.get_inter_op_parallelism_threads()]))
"""


@pytest.mark.processes
def test_the_runtimes_take_the_budget_before_their_pools_start():
    done = subprocess.run(
        [sys.executable, "-c", _HOOKS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [1, 1, 1, 1]
    assert "TensorFlow keeps its thread pools" in done.stderr


def test_no_count_leaves_the_runtimes_alone(monkeypatch):
    # Neither runtime is imported when there is nothing to set.
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    thread_budget.apply_torch(None)
    thread_budget.apply_tensorflow(None)
