"""bench/bench_depth_cpu.py's start-up table: the arithmetic on its
processes' phases (the phases themselves run TensorFlow: not here)."""

from __future__ import annotations

from bench.bench_depth_cpu import startup_rows


def test_the_start_up_is_every_phase_but_the_batches_plus_the_first_ones_excess():
    runs = [
        {"import": 2.0, "build": 3.0, "first batch": 9.0, "second batch": 4.0},
        {"import": 4.0, "build": 1.0, "first batch": 7.0, "second batch": 4.0},
        {"import": 3.0, "build": 2.0, "first batch": 8.0, "second batch": 4.0},
    ]
    rows = dict(startup_rows(runs, batch_size=4))
    assert rows["import"] == "3.00" and rows["build"] == "2.00"
    assert rows["first batch's excess over the second (trace, first call)"] == "4.00"
    assert rows["**start-up in all** (every phase but the batches, plus the excess)"] == "9.00"
    assert rows["a batch of 4, per image (the second)"] == "1.000"
