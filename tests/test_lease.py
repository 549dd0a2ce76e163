"""The output lease (fgbg/lease.py): one build at a time per output, on a
local folder and on gs:// (the GCS emulator, answering generation
preconditions as GCS does). Races are real: separate processes."""

import dataclasses
import datetime
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.internal.gcp import auth
from apache_beam.options.pipeline_options import PipelineOptions

from fgbg import layout
from fgbg.lease import (
    Lease,
    LeaseHeldError,
    LeaseLostError,
    LeaseRecord,
    lease_store,
    utc_now,
)
from tests.fault_proxy import FaultProxy
from tests.helpers import emulated_bucket

REPO = Path(__file__).resolve().parents[1]
BUCKET = "fgbg-lease"
RACERS = 6


@pytest.fixture(params=["local", pytest.param("gs", marks=pytest.mark.gcs)])
def output(request, tmp_path, monkeypatch):
    """An output folder, local or in an emulated bucket."""
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    with emulated_bucket(monkeypatch, BUCKET, preconditions=True):
        yield f"gs://{BUCKET}/datasets/v1"


def lease(output: str, stale_after_s: float = 60.0, force: bool = False, clock=utc_now) -> Lease:
    return Lease(lease_store(output, PipelineOptions([])), stale_after_s, True, force, clock)


def read_lease(output: str) -> dict:
    data, _ = lease_store(output, PipelineOptions([])).read()
    return json.loads(data) if data else None


def later(seconds: float):
    return lambda: utc_now() + datetime.timedelta(seconds=seconds)


def test_a_held_lease_refuses_a_second_build_naming_the_lease_and_its_holder(output):
    with lease(output) as first:
        held = read_lease(output)
        assert held["pid"] == os.getpid() and held["host"] and held["owner"]
        with pytest.raises(LeaseHeldError) as refused:
            lease(output, force=True).acquire()
        message = str(refused.value)
        assert layout.resolve(output, layout.LEASE_JSON) in message
        assert f"pid {os.getpid()}" in message and held["run_id"] in message
        assert "another build is writing this output" in message
        first.check_held()
    assert read_lease(output) is None
    with lease(output):  # released: the next build takes it
        pass


def test_a_stale_lease_is_taken_only_with_force_and_its_holder_learns_it_lost(output):
    first = lease(output, stale_after_s=30)
    first.acquire()  # taken, never renewed: as if its build hung or lost its network
    in_a_minute = later(60)
    with pytest.raises(LeaseHeldError, match="stale lease .* rerun with --force"):
        lease(output, clock=in_a_minute).acquire()
    second = lease(output, force=True, clock=in_a_minute)
    second.acquire()
    assert read_lease(output)["run_id"] != json.loads(first._record.to_bytes())["run_id"]
    assert first.renew() is False
    with pytest.raises(LeaseLostError, match="another build took over this output"):
        first.check_held()
    first.__exit__(None, None, None)  # the loser leaves the new holder's lease alone
    assert read_lease(output) is not None


def renewed_past_stale_time(output: str, timeout_s: float = 60.0) -> dict:
    """The lease's record once its holder has renewed it later than its
    stale time after it was taken (so it would be stale by now had it not
    been renewed); fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        held = read_lease(output)
        started = datetime.datetime.fromisoformat(held["started_at"])
        renewed = datetime.datetime.fromisoformat(held["renewed_at"])
        if (renewed - started).total_seconds() > held["stale_after_s"]:
            return held
        time.sleep(held["stale_after_s"] / 10)
    raise AssertionError(f"the lease was not renewed past its stale time in {timeout_s} s")


def test_a_renewed_lease_never_goes_stale(output):
    with lease(output, stale_after_s=1.0) as holder:
        renewed_past_stale_time(output)
        with pytest.raises(LeaseHeldError, match="another build is writing"):
            lease(output, force=True).acquire()
        holder.check_held()


@pytest.mark.processes
def test_a_lease_left_by_a_dead_local_build_of_this_host_is_taken_without_force(output):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    lease(output).acquire()
    store = lease_store(output, PipelineOptions([]))
    data, token = store.read()
    launcher = LeaseRecord(**{**json.loads(data), "pid": int(gone.stdout), "local_run": False})
    token = store.put(launcher, token)
    with pytest.raises(LeaseHeldError, match="another build is writing"):
        lease(output).acquire()  # a Dataflow job may outlive its launcher
    store.put(dataclasses.replace(launcher, local_run=True), token)
    with lease(output):
        assert read_lease(output)["pid"] == os.getpid()


# A racer connects (a first read) before saying it is ready, so a slow
# credential lookup cannot make it late; and it stays alive until every racer
# has answered, so a late racer never finds the winner's lease left by a
# process that has exited (which a local build may take over: a dead owner).
RACER = """
import sys
from apache_beam.internal.gcp import auth
from apache_beam.options.pipeline_options import PipelineOptions
from fgbg.lease import Lease, LeaseHeldError, lease_store
auth.get_service_credentials = lambda options: None  # the emulator is anonymous
store = lease_store(sys.argv[1], PipelineOptions([]))
store.read()
lease = Lease(store, 60.0, True)
print("ready", flush=True)
sys.stdin.readline()
try:
    lease.acquire()
except LeaseHeldError:
    print("refused", flush=True)
else:
    print("took", flush=True)
sys.stdin.readline()
"""


def line_from(process: subprocess.Popen, timeout_s: float = 120.0) -> str:
    """The process's next line of output, or fail after `timeout_s`."""
    readable, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert readable, f"no answer from racer {process.pid} in {timeout_s} s"
    return process.stdout.readline().strip()


@pytest.mark.processes
def test_racing_builds_one_takes_the_lease_the_others_are_refused(output):
    """Processes that all try at the same instant (each made ready first,
    then all released at once): exactly one wins, whichever comes first."""
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, output],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    for racer in racers:
        assert line_from(racer) == "ready"
    for racer in racers:
        racer.stdin.write("go\n")
        racer.stdin.flush()
    answers = sorted(line_from(racer) for racer in racers)
    for racer in racers:
        racer.communicate("done\n", timeout=120)
    assert answers == ["refused"] * (RACERS - 1) + ["took"]


def test_an_unreadable_lease_is_refused_naming_it_and_taken_with_force(output):
    """A lease from another fgbg version (a field it lacks) or a damaged
    one is neither trusted nor ignored."""
    older = {"run_id": "0ld", "owner": "u", "host": "h", "pid": 1, "stale_after_s": 60.0}
    store = lease_store(output, PipelineOptions([]))
    if output.startswith("gs://"):
        store._blob.upload_from_string(json.dumps(older))
    else:
        Path(store.path).parent.mkdir(parents=True)
        Path(store.path).write_text(json.dumps(older))
    with pytest.raises(LeaseHeldError, match="an unreadable lease holds this output .* --force"):
        lease(output).acquire()
    with lease(output, force=True):
        assert read_lease(output)["pid"] == os.getpid()


@pytest.mark.gcs
def test_the_lease_stays_correct_when_answers_are_lost(monkeypatch):
    """The first and every third request of each kind reach the storage,
    which acts, and their answers are lost (tests/fault_proxy.py): the
    client repeats a take, renewal, takeover or release that already
    happened, and the generation preconditions turn each repeat into a 412
    or 404 that the lease reads as its own earlier success."""
    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    with emulated_bucket(monkeypatch, BUCKET, preconditions=True):
        with FaultProxy(os.environ["STORAGE_EMULATOR_HOST"], 0.0, lost_every=3) as proxy:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            output = f"gs://{BUCKET}/datasets/v1"
            with lease(output) as first:
                for _ in range(3):
                    assert first.renew()
                with pytest.raises(LeaseHeldError, match="another build is writing"):
                    lease(output, force=True).acquire()
                first.check_held()
            assert read_lease(output) is None

            stale = lease(output, stale_after_s=30)
            stale.acquire()
            taker = lease(output, force=True, clock=later(60))
            taker.acquire()
            assert not stale.renew()
            with pytest.raises(LeaseLostError):
                stale.check_held()
            assert read_lease(output)["run_id"] == json.loads(taker._record.to_bytes())["run_id"]
            taker.__exit__(None, None, None)
            assert read_lease(output) is None
            assert {"write", "read", "delete"} <= set(proxy.lost), proxy.lost
