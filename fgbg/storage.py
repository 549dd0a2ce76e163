"""Reading and writing whole files, local or gs://, never half-written.

Locally a file is written to a hidden temporary name in the same folder and
renamed into place; on object stores (gs://) an upload only becomes visible
when it completes. Either way a crash leaves no partial file under its final
name.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from typing import Any, BinaryIO, Deque, Dict, Iterator, List, Optional, Sequence

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

from fgbg import layout

TEMPORARY_SUFFIX = ".tmp"
GLOB_CHARACTERS = "[]*?"  # what Beam's file patterns read as a pattern
READ_AHEAD = 16
# Files are bytes as they are: Beam would otherwise guess a compression from a
# name ending in .gz or .bz2 and (de)compress it.
AS_IS = CompressionTypes.UNCOMPRESSED


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) in (None, "file")


def temporary_path(path: str) -> str:
    """A hidden sibling of `path` that remove_stale_temporaries recognises."""
    paths = os.path if is_local(path) else posixpath
    directory, name = paths.split(path)
    return paths.join(directory, f".{name}.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}")


class StorageError(Exception):
    """A file could not be written, or a remote one read: a full disk, a
    read-only folder, object storage that kept failing after its retries.

    Deliberately not an OSError: the input readers reject a file whose read
    raises OSError as bad input, and a storage failure must fail the run
    instead (a rerun resumes) rather than drop a good input."""


def storage_error(action: str, path: str, error: BaseException) -> StorageError:
    """`cannot <action> <path>: <reason>`, the reason without Python's
    `[Errno n]` prefix or a repeat of the path, and in our words where the
    storage never answered (`failing_storage_reason`)."""
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror
    else:
        reason = failing_storage_reason(error) or str(error)
    return StorageError(f"cannot {action} {path}: {reason or type(error).__name__}")


def failing_storage_reason(error: BaseException) -> str:
    """Why a remote request failed when the storage itself failed: it gave
    no answer that says why (it went away, or stayed away longer than the
    client retries), or a batch operation still failed when the retries
    ended; else '' (an answer such as 403 or 404 says why). The client's
    own text names no object and, from Beam's batch operations, is an
    AttributeError on a missing answer."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError

    if isinstance(error, StorageError):  # raised for another file already
        return failing_storage_reason(error.__cause__) if error.__cause__ else ""
    if isinstance(error, RetryError):
        cause = f" (last: {type(error.cause).__name__})" if error.cause else ""
        return f"the storage did not answer within the client's retries{cause}"
    if isinstance(error, BeamIOError):
        causes = (error.exception_details or {}).values()
        return next(filter(None, (_batch_reason(cause) for cause in causes)), "")
    if isinstance(error, AttributeError):  # Beam's batch request got no answers
        return "the storage did not answer within the client's retries"
    if isinstance(error, GoogleAPICallError):  # an answer: 403, 404, ...
        return ""
    if isinstance(error, OSError) or type(error).__module__.startswith(("urllib3", "google.auth")):
        return f"the storage did not answer ({type(error).__name__})"
    return ""


def _batch_reason(cause: object) -> str:
    """Why one file of a Beam batch operation failed: an exception, or the
    HTTP status the storage still answered when the client's retries
    ended."""
    if isinstance(cause, int):
        return f"the storage still answered HTTP {cause} when the client's retries ended"
    return failing_storage_reason(cause) if isinstance(cause, BaseException) else ""


@contextlib.contextmanager
def remote_failures(action: str, path: str) -> Iterator[None]:
    """Raise a remote storage failure inside the block as StorageError
    naming `path`, so a build that fails says which object it could not
    reach; local errors, StorageError and FileNotFoundError pass as they
    are."""
    try:
        yield
    except Exception as error:
        if is_local(path) or isinstance(error, (StorageError, FileNotFoundError)):
            raise
        raise storage_error(action, path, error) from error


def _is_storage_failure(error: BaseException, path: str) -> bool:
    """Locally only OSErrors come from storage; remote clients raise their
    own kinds (HTTP errors, connection errors, Beam's BeamIOError)."""
    return isinstance(error, OSError) or (
        isinstance(error, Exception) and not isinstance(error, StorageError) and not is_local(path)
    )


def write_file(path: str, data: bytes) -> None:
    """Write `path` whole or not at all; StorageError names it on failure."""
    try:
        if is_local(path):
            _write_local_file(path, data)
        else:
            with FileSystems.create(path, compression_type=AS_IS) as handle:
                handle.write(data)
    except Exception as error:
        if _is_storage_failure(error, path):
            raise storage_error("write", path, error) from error
        raise


def _write_local_file(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory or ".", exist_ok=True)
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


@contextlib.contextmanager
def streamed_file(path: str) -> Iterator[BinaryIO]:
    """A handle for a file made piece by piece, so that only one piece is in
    memory at a time. The pieces go to a temporary name that is renamed into
    place when the block ends without an error (on gs:// too, where closing
    an upload would otherwise publish whatever was written before a
    failure); on an error the temporary file is removed, and a storage
    failure is raised as StorageError naming `path`. Storage that stopped
    answering is not asked again to remove it: that would wait out the
    client's retries a second time, and the next build removes it
    (`remove_stale_temporaries`)."""
    temporary = temporary_path(path)
    try:
        if is_local(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with FileSystems.create(temporary, compression_type=AS_IS) as handle:
            yield handle
        FileSystems.rename([temporary], [path])
    except BaseException as error:
        if is_local(path) or not failing_storage_reason(error):
            with contextlib.suppress(Exception):
                delete_files([temporary])
        if _is_storage_failure(error, path):
            raise storage_error("write", path, error) from error
        raise


def read_file(path: str) -> bytes:
    """A file's bytes. A local failure stays an OSError (the file itself is
    unreadable: input readers reject it); a remote one that outlived its
    retries is a StorageError, except an object that is not there."""
    try:
        with FileSystems.open(path, compression_type=AS_IS) as handle:
            return handle.read()
    except Exception as error:
        if is_local(path) or isinstance(error, (FileNotFoundError, StorageError)):
            raise
        from google.api_core.exceptions import NotFound

        if isinstance(error, NotFound):
            raise FileNotFoundError(f"{path}: {error}") from error
        raise storage_error("read", path, error) from error


def read_files(
    paths: Sequence[str], window: int = READ_AHEAD, missing: Optional[bytes] = None
) -> Iterator[bytes]:
    """Each file's bytes, in the order given; `missing` for a file that is
    not there, when given (else FileNotFoundError). On object stores, where
    every read waits tens of milliseconds for its first byte, up to `window`
    reads run ahead in threads; local files are simply read one after
    another."""
    read = read_file if missing is None else functools.partial(_read_if_there, missing=missing)
    if not paths or is_local(paths[0]):
        yield from map(read, paths)
        return
    with concurrent.futures.ThreadPoolExecutor(window) as pool:
        pending: Deque[concurrent.futures.Future] = collections.deque()
        for path in paths:
            pending.append(pool.submit(read, path))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _read_if_there(path: str, missing: bytes) -> bytes:
    try:
        return read_file(path)
    except FileNotFoundError:
        return missing


def literal_pattern(path: str) -> str:
    """A Beam file pattern that matches `path` itself: Beam has no escape
    character, but a one-character class such as [*] matches the character."""
    return "".join(f"[{ch}]" if ch in GLOB_CHARACTERS else ch for ch in path)


def list_folder(path: str) -> List[str]:
    """Every file under a folder, as paths relative to it with '/' between
    parts; [] when there is none. On object stores: every object under the
    prefix, taken literally, less folder markers (empty objects named
    '.../', which some tools create)."""
    folder = path.rstrip("/")
    if is_local(folder):
        return [
            os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
            for parent, _, names in os.walk(folder)
            for name in names
        ]
    with remote_failures("list", folder):
        found = FileSystems.match([f"{literal_pattern(folder)}/**"])[0].metadata_list
    names = (metadata.path[len(folder) + 1 :] for metadata in found)
    return [name for name in names if name and not name.endswith("/")]


def copy_tree(source: str, destination: str) -> List[str]:
    """Copy every file under the folder `source` to the same relative path
    under `destination` (each local or gs://); returns the relative paths
    copied, sorted.

    Libraries that write with their own file layer (tensorflow-transform
    writes with TensorFlow's, which ignores Beam's options and so a GCS
    emulator) write into scratch, and this publishes the result through
    Beam's FileSystems. Each file is written whole as write_file
    writes (temporary name and rename locally, one upload on gs://), and
    bytes are copied as they are: no compression is read into a name such
    as `vocab.gz`, on either side (read_file and write_file never guess
    compression).
    """
    names = sorted(list_folder(source))
    for name in names:
        write_file(layout.resolve(destination, name), read_file(layout.resolve(source, name)))
    return names


def delete_files(paths: Sequence[str]) -> None:
    """Delete these files, taken literally; one that is already gone (a
    duplicate attempt of the same work deleted it) is not an error."""
    if not paths:
        return
    if is_local(paths[0]):
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        return
    # One path a call: Beam's GCS delete looks each path up before deleting
    # it and stops at the first lookup that finds the object gone, so in one
    # call a file another attempt deleted meanwhile would keep the rest.
    # Beam sends a request per path either way.
    for path in paths:
        with remote_failures("delete", path):
            try:
                FileSystems.delete([literal_pattern(path)])
            except BeamIOError as error:
                if not _was_gone(error):
                    raise


def _was_gone(error: BaseException) -> bool:
    """Whether a remote operation failed only because its object was not
    there (Beam's BeamIOError holds the client's NotFound per path)."""
    from google.api_core.exceptions import NotFound

    if isinstance(error, BeamIOError):
        causes = list((error.exception_details or {}).values())
        return bool(causes) and all(
            isinstance(cause, BaseException) and _was_gone(cause) for cause in causes
        )
    return isinstance(error, (NotFound, FileNotFoundError))


def remove_empty_folder(path: str) -> None:
    """Remove a local folder left empty by deletions; object stores have no
    folders to remove, and a folder that still holds files stays."""
    if is_local(path):
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(path)


def write_json(root: str, relative: str, document: object) -> None:
    """A JSON document under a dataset root, keys sorted so reruns match."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_file(layout.resolve(root, relative), text.encode())


def read_json(root: str, relative: str) -> Dict[str, Any]:
    return json.loads(read_file(layout.resolve(root, relative)))


def match_files(pattern: str) -> List[str]:
    """Sorted paths matching a local or gs:// glob."""
    with remote_failures("list", pattern):
        matches = FileSystems.match([pattern])[0].metadata_list
    return sorted(metadata.path for metadata in matches)


def exists(path: str) -> bool:
    with remote_failures("read", path):
        return FileSystems.exists(path)


def remove_stale_temporaries(root: str, remote_folders: Sequence[str] = ("",)) -> int:
    """Delete temporary files a killed or failed run left behind; returns
    how many. Locally every folder under `root` is searched; on object
    stores only `remote_folders` (relative to `root`), since listing a
    whole dataset costs a request per thousand objects and only
    `streamed_file` leaves temporaries there."""
    if not is_local(root):
        found = [
            path
            for folder in remote_folders
            for path in match_files(
                f"{literal_pattern(layout.resolve(root, folder) if folder else root)}"
                f"/.*{TEMPORARY_SUFFIX}"
            )
        ]
        delete_files(found)
        return len(found)
    if not os.path.isdir(root):
        return 0
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path for `uri`, copying a remote file or directory to a
    temporary folder; FileNotFoundError when there is nothing at `uri`.

    Keras and h5py only open local files (TensorFlow's own file layer also
    ignores a GCS emulator), so gs:// models are fetched through Beam's
    FileSystems first. A remote directory is copied whole (a SavedModel).
    """
    if is_local(uri):
        if not os.path.exists(uri):
            raise FileNotFoundError(uri)
        yield uri
        return
    root = uri.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="fgbg-copy-") as folder:
        local = os.path.join(folder, posixpath.basename(root))
        if exists(FileSystems.join(root, "saved_model.pb")):
            for relative in list_folder(root):
                copy_to_local(f"{root}/{relative}", os.path.join(local, relative))
        elif exists(root):
            copy_to_local(root, local)
        else:
            raise FileNotFoundError(uri)
        yield local


def copy_to_local(uri: str, local_path: str) -> None:
    """Copy one file (local or gs://) to a local path, making its folder."""
    os.makedirs(os.path.dirname(local_path), exist_ok=True)
    with FileSystems.open(uri) as source, open(local_path, "wb") as target:
        shutil.copyfileobj(source, target, length=16 << 20)
