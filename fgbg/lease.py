"""One build at a time per output: a lease object in the output folder.

Two builds writing the same output (a Composer retry racing an attempt that
is still running, two terminals) would delete each other's temporary files,
remake each other's pairs and mix two sets of tables. So a build first takes
`<output>/.lease.json`, which names its owner, host, process and start time,
renews it while it runs and deletes it when it ends. A second build finds it
and is refused with the lease's contents.

A lease is stale when its owner has not renewed it for `stale_after_s`
seconds (the owner renews it `RENEWALS_PER_STALE_TIME` times as often): its
owner crashed, or lost its network, or is a Dataflow launcher that was
killed while its job may still run. Only `--force` takes over a stale lease,
because only the user can tell which. A lease left by a local build whose
process on this host no longer exists is taken over without asking: that
build is certainly gone (killed with SIGKILL, say).

Taking, renewing and releasing are atomic: on gs:// through object
generation preconditions (create only if absent, replace or delete only the
generation read), locally under an exclusive lock on the output folder.
Beam's FileSystems has neither, hence the two small stores below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import getpass
import json
import logging
import os
import socket
import threading
import uuid
from typing import Callable, Iterator, Optional, Tuple

from fgbg import layout
from fgbg.storage import is_local, storage_error, write_file

RENEWALS_PER_STALE_TIME = 5
# After a failed build the lease is released within this share of the
# storage client's retry window: the failure may be storage that stopped
# answering, and the build must not wait out the whole window again.
RELEASE_AFTER_FAILURE_SHARE = 0.1
_READ_ATTEMPTS = 5
LOG = logging.getLogger(__name__)


class LeaseHeldError(Exception):
    """Another build holds this output's lease."""


class LeaseLostError(Exception):
    """Another build took over this build's lease while it ran."""


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """What a lease says about the build that holds it."""

    run_id: str
    owner: str
    host: str
    pid: int
    started_at: str
    renewed_at: str
    stale_after_s: float
    local_run: bool  # the build's work runs in the owner's processes

    def to_bytes(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LeaseRecord":
        """ValueError when `data` is not a lease of this version."""
        try:
            return cls(**json.loads(data))
        except (TypeError, ValueError) as error:
            raise ValueError(f"not a lease this version reads ({error})") from None

    def renewed(self, now: datetime.datetime) -> "LeaseRecord":
        return dataclasses.replace(self, renewed_at=now.isoformat())

    def stale_since(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.renewed_at) + datetime.timedelta(
            seconds=self.stale_after_s
        )

    def is_stale(self, now: datetime.datetime) -> bool:
        return now >= self.stale_since()

    def owner_is_gone(self) -> bool:
        """True when the owner ran the build itself on this host and its
        process has ended. A Dataflow job can outlive its launcher, so its
        lease is never judged this way."""
        return (
            self.local_run and self.host == socket.gethostname() and not _process_exists(self.pid)
        )

    def describe(self) -> str:
        return (
            f"run {self.run_id} by {self.owner} on {self.host} (pid {self.pid}), "
            f"started {self.started_at}, last renewed {self.renewed_at}"
        )


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _user() -> str:
    """The user name, or the uid where the account has none (containers)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _run_id(data: bytes) -> Optional[str]:
    try:
        return LeaseRecord.from_bytes(data).run_id
    except ValueError:
        return None


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class _Changed(Exception):
    """The lease object is not the one this store last read."""


class _LocalStore:
    """A lease file in a local folder; every step runs under an exclusive
    flock on the folder itself, so steps of builds on this host never
    interleave."""

    def __init__(self, path: str):
        self.path = path
        self._folder = os.path.dirname(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            os.makedirs(self._folder, exist_ok=True)
            descriptor = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise storage_error("write", self._folder, error) from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _read(self) -> Tuple[Optional[bytes], Optional[bytes]]:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None, None
        return data, data

    def read(self) -> Tuple[Optional[bytes], Optional[bytes]]:
        """The lease's bytes and the token to change it by (None, None when
        there is none)."""
        with self._locked():
            return self._read()

    def put(self, record: LeaseRecord, expected: Optional[bytes]) -> bytes:
        """Write `record` if the lease is still `expected` (None: absent)."""
        with self._locked():
            if self._read()[1] != expected:
                raise _Changed()
            data = record.to_bytes()
            write_file(self.path, data)
            return data

    def delete(self, expected: bytes, patience: float = 1.0) -> None:
        with self._locked():
            if self._read()[1] == expected:
                os.remove(self.path)


class _GcsStore:
    """A lease object on gs://, changed only with generation preconditions."""

    def __init__(self, path: str, client):
        from google.cloud.storage.retry import DEFAULT_RETRY

        bucket, _, name = path[len("gs://") :].partition("/")
        self.path = path
        self._blob = client.bucket(bucket).blob(name)
        # Requests that carry a generation precondition are safe to repeat.
        self._retry = DEFAULT_RETRY

    def read(self) -> Tuple[Optional[bytes], Optional[int]]:
        """The lease and its generation, read as one: the bytes are
        downloaded only if they are still that generation's."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        for _ in range(_READ_ATTEMPTS):
            try:
                blob = self._blob.bucket.get_blob(self._blob.name, retry=self._retry)
                if blob is None:
                    return None, None
                generation = blob.generation  # a download resets it from its headers
                data = blob.download_as_bytes(if_generation_match=generation, retry=self._retry)
            except (NotFound, PreconditionFailed):
                continue  # replaced or deleted between the two requests
            except Exception as error:
                raise storage_error("read", self.path, error) from error
            return data, generation
        raise LeaseHeldError(
            f"{self.path}: the lease changed {_READ_ATTEMPTS} times while it was read: "
            "other builds are taking it"
        )

    def put(self, record: LeaseRecord, expected: Optional[int]) -> int:
        from google.api_core.exceptions import PreconditionFailed

        try:
            self._blob.upload_from_string(
                record.to_bytes(),
                content_type="application/json",
                if_generation_match=expected or 0,
                retry=self._retry,
            )
        except PreconditionFailed as error:
            raise _Changed() from error
        except Exception as error:
            raise storage_error("write", self.path, error) from error
        return self._blob.generation

    def delete(self, expected: int, patience: float = 1.0) -> None:
        """Delete the lease if it is still generation `expected`, retrying
        for `patience` times the client's retry window."""
        from google.api_core.exceptions import NotFound, PreconditionFailed

        retry = self._retry.with_timeout(self._retry.timeout * patience)
        try:
            self._blob.delete(if_generation_match=expected, retry=retry)
        except (NotFound, PreconditionFailed):
            return
        except Exception as error:
            raise storage_error("delete", self.path, error) from error


def lease_store(output: str, pipeline_options):
    """The store for `output`'s lease; on gs:// through a storage client
    made as Beam makes its own (same credentials, same emulator)."""
    path = layout.resolve(output, layout.LEASE_JSON)
    if is_local(path):
        return _LocalStore(path)
    from apache_beam.io.gcp.gcsio import create_storage_client

    return _GcsStore(path, create_storage_client(pipeline_options))


class Lease:
    """Hold an output's lease for the length of a `with` block.

    On entry the lease is taken or LeaseHeldError raised; while the block
    runs a daemon thread renews it; on exit it is deleted if it is still
    this build's. If another build took it over meanwhile (it went stale and
    was forced), `lost` says so and `check_held` raises LeaseLostError.
    """

    def __init__(
        self,
        store,
        stale_after_s: float,
        local_run: bool,
        force: bool = False,
        clock: Callable[[], datetime.datetime] = utc_now,
    ):
        self._store = store
        self._stale_after_s = stale_after_s
        self._local_run = local_run
        self._force = force
        self._clock = clock
        self._token = None
        self._record: Optional[LeaseRecord] = None
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None
        self.lost: Optional[str] = None

    @property
    def path(self) -> str:
        return self._store.path

    def __enter__(self) -> "Lease":
        self.acquire()
        self._renewer = threading.Thread(target=self._renew_until_stopped, daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        """Release the lease. After a failure a renewal in flight is not
        waited for, and the release retries only briefly: the failure may
        be storage that stopped answering (the generation precondition
        keeps a late renewal from bringing the lease back)."""
        failed = exc_type is not None
        self._stop.set()
        if self._renewer and not failed:
            self._renewer.join()
        if self.lost is not None:
            return
        try:
            self._store.delete(self._token, 1.0 if not failed else RELEASE_AFTER_FAILURE_SHARE)
        except Exception as error:  # never hide why the build ended
            LOG.warning(
                "could not delete the lease %s (%s); it goes stale in %g s",
                self.path,
                error,
                self._stale_after_s,
            )

    def acquire(self) -> LeaseRecord:
        now = self._clock()
        record = LeaseRecord(
            run_id=uuid.uuid4().hex[:12],
            owner=_user(),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now.isoformat(),
            renewed_at=now.isoformat(),
            stale_after_s=self._stale_after_s,
            local_run=self._local_run,
        )
        data, token = self._store.read()
        if data is not None:
            held = self._check_can_take_over(data, now)
            LOG.warning("taking over the lease %s from %s", self.path, held)
        try:
            self._token = self._store.put(record, token)
        except _Changed:
            self._token = self._token_if_ours(record)
            if self._token is None:
                raise LeaseHeldError(
                    f"{self.path}: another build took this output's lease at the same moment"
                ) from None
        self._record = record
        return record

    def _check_can_take_over(self, data: bytes, now: datetime.datetime) -> str:
        """Who holds the lease, when this build may take it over; else
        LeaseHeldError saying why not."""
        try:
            held = LeaseRecord.from_bytes(data)
        except ValueError as error:
            if self._force:
                return f"an unreadable lease ({error})"
            raise LeaseHeldError(
                f"{self.path}: an unreadable lease holds this output ({error}): another "
                "fgbg version wrote it, or it is damaged. If no build is writing this "
                "output, rerun with --force to take it over."
            ) from None
        if held.owner_is_gone():
            return held.describe()
        if not held.is_stale(now):
            raise LeaseHeldError(
                f"{self.path}: another build is writing this output: {held.describe()}. "
                f"Its lease goes stale at {held.stale_since().isoformat()} if it stops "
                "renewing it; --force takes over a stale lease. If you know that build "
                "is gone, delete the lease file."
            )
        if not self._force:
            raise LeaseHeldError(
                f"{self.path}: a stale lease holds this output: {held.describe()}; it "
                f"was not renewed within {held.stale_after_s:g} s. If that build is gone "
                "(crashed, or its Dataflow job is finished or cancelled), rerun with "
                "--force to take the lease over."
            )
        return held.describe()

    def _renew_until_stopped(self) -> None:
        interval = self._stale_after_s / RENEWALS_PER_STALE_TIME
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Renew the lease; False (and `lost` set) when it is not ours any
        more. A renewal that fails for a while is retried at the next one."""
        record = self._record.renewed(self._clock())
        try:
            self._token = self._store.put(record, self._token)
        except _Changed:
            token = self._token_if_ours(record)
            if token is None:
                if self._stop.is_set():  # released meanwhile, by this build
                    return False
                self.lost = self._holder()
                LOG.error("lost the lease %s: %s", self.path, self.lost)
                return False
            self._token = token
        except Exception as error:  # storage down for a while: try again next time
            LOG.warning("could not renew the lease %s: %s", self.path, error)
            return True
        self._record = record
        return True

    def _token_if_ours(self, record: LeaseRecord):
        """The lease's token when the lease is `record`'s run: a retried
        request whose first try did land (its answer was lost) finds the
        lease changed, by itself."""
        data, token = self._store.read()
        return token if data is not None and _run_id(data) == record.run_id else None

    def _holder(self) -> str:
        data, _ = self._store.read()
        if data is None:
            return "the lease was deleted"
        try:
            return LeaseRecord.from_bytes(data).describe()
        except ValueError as error:
            return f"an unreadable lease ({error})"

    def check_held(self) -> None:
        if self.lost is not None:
            raise LeaseLostError(
                f"{self.path}: another build took over this output while this one ran "
                f"({self.lost}); the output may mix both builds' files: rerun one build."
            )
