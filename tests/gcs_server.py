"""The GCS emulator (gcp-storage-emulator) in a process of its own, for the
tests: its JSON API on one loopback port, and a small control API on
another (`/_control/...`) through which a test resets it, makes it answer
as GCS does where the emulator does not, stops it for a while, and waits
for that outage to end.

Run by tests/gcs_helpers.py, once per test run (per pytest-xdist worker):
`python tests/gcs_server.py`
prints one JSON line, {"api": PORT, "control": PORT}, once both answer, and
exits when its standard input closes (the test run ended, however it ended).

A process of its own because a build in the test process and an emulator
in threads beside it share one interpreter: the build's storage calls then
wait on the emulator's turn at the GIL (about 35 s of a 49 s gs:// build,
py-spy). The builds still talk to the real emulator over HTTP.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import time
from functools import partial
from http import HTTPStatus
from typing import Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import buckets, objects
from gcp_storage_emulator.storage import Storage


class Settings:
    """What a test asked of the emulator beyond its own behaviour; reset
    with the storage."""

    def __init__(self) -> None:
        self.preconditions = False
        self.repeated_uploads = False
        self.finished_uploads: Dict[str, Tuple[str, str]] = {}  # upload id -> (bucket, name)


SETTINGS = Settings()
_PRECONDITION_LOCK = threading.Lock()


def _generation(storage, bucket: str, name: str) -> int:
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return 0


def _checked(handler, object_name: Callable):
    """`handler`, answering `ifGenerationMatch` as GCS does (412 when the
    object's generation differs; 0 means "does not exist") while
    `SETTINGS.preconditions`. gcp-storage-emulator ignores preconditions,
    and the output lease (fgbg/lease.py) is built on them."""

    def handle(request, response, storage, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        if wanted is None or not SETTINGS.preconditions:
            return handler(request, response, storage, *args, **kwargs)
        with _PRECONDITION_LOCK:
            current = _generation(storage, request.params["bucket_name"], object_name(request))
            if current != int(wanted[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "conditionNotMet"}})
                return None
            return handler(request, response, storage, *args, **kwargs)

    return handle


def _inserted_name(request) -> str:
    if "name" in request.query:
        return request.query["name"][0]
    return request.data["meta"]["name"]


def _upload_partial(request, response, storage, *args, **kwargs):
    """A resumable upload's chunk; while `SETTINGS.repeated_uploads`, a
    repeat of a finished upload's last chunk is answered as GCS does: 200
    with the object it made. gcp-storage-emulator forgets the session and
    answers 404, so a client whose answer to the last chunk was lost (it
    retries, as it should) would fail."""
    if not SETTINGS.repeated_uploads:
        return objects.upload_partial(request, response, storage, *args, **kwargs)
    finished = SETTINGS.finished_uploads
    upload_id = request.query.get("upload_id")[0]
    if upload_id in finished:
        response.json(storage.get_file_obj(*finished[upload_id]))
        return None
    try:
        session = storage.get_resumable_file_obj(upload_id)
    except NotFound:
        session = None
    answer = objects.upload_partial(request, response, storage, *args, **kwargs)
    if session is not None and upload_id not in storage.resumable:
        finished[upload_id] = (session["bucket"], session["name"])
    return answer


def extend_handlers() -> None:
    """The emulator's routes, with the answers above switchable per test."""
    for _, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is objects.insert:
                handlers[method] = _checked(handler, _inserted_name)
            elif handler is objects.delete:
                handlers[method] = _checked(handler, lambda r: r.params["object_id"])
            elif handler is objects.upload_partial:
                handlers[method] = _upload_partial


class Outage:
    """Once the storage holds `count` objects whose names contain
    `containing`, the API stops (its listening socket closed, as the
    emulator's own stop does), stays down `down_s` seconds, and serves the
    same storage again on the same port."""

    def __init__(self, containing: str, count: int, down_s: float):
        self.containing, self.count, self.down_s = containing, count, down_s
        self.due = threading.Event()
        self.over = threading.Event()

    def check(self, storage: Storage) -> None:
        if self.due.is_set():
            return
        names = (name for bucket in storage.objects.values() for name in bucket)
        if sum(self.containing in name for name in names) >= self.count:
            self.due.set()


class Emulator:
    """The emulator's storage and API server, restartable on its port."""

    def __init__(self) -> None:
        self.storage = Storage(use_memory_fs=True)
        self.outage: Optional[Outage] = None
        self._httpd = self._serve(0)
        self.port = self._httpd.server_address[1]

    def _serve(self, port: int) -> http.server.HTTPServer:
        emulator = self

        class Handler(server.RequestHandler):
            def handle_one_request(self) -> None:
                super().handle_one_request()
                if emulator.outage is not None:
                    emulator.outage.check(emulator.storage)

        httpd = http.server.HTTPServer(("127.0.0.1", port), partial(Handler, self.storage))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd

    def reset(self, bucket_names) -> None:
        self.storage.wipe()
        for name in bucket_names:
            buckets.create_bucket(name, self.storage)
        SETTINGS.preconditions = SETTINGS.repeated_uploads = False
        SETTINGS.finished_uploads.clear()
        self.outage = None

    def arm_outage(self, outage: Outage) -> None:
        self.outage = outage
        threading.Thread(target=self._ride_out, args=(outage,), daemon=True).start()

    def _ride_out(self, outage: Outage) -> None:
        outage.due.wait()
        self._httpd.shutdown()
        self._httpd.server_close()
        time.sleep(outage.down_s)  # the outage itself, not a wait for an event
        self._httpd = self._serve(self.port)
        outage.over.set()


def control_handler(emulator: Emulator):
    class Control(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            route = urlsplit(self.path).path
            if route == "/_control/reset":
                emulator.reset(body["buckets"])
                self._answer({})
            elif route == "/_control/answers":
                SETTINGS.preconditions = body["preconditions"]
                SETTINGS.repeated_uploads = body["repeated_uploads"]
                self._answer({})
            elif route == "/_control/outage":
                emulator.arm_outage(Outage(body["containing"], body["count"], body["down_s"]))
                self._answer({})
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/_control/outage":
                timeout = float(parse_qs(parts.query).get("timeout", ["0"])[0])
                outage = emulator.outage
                over = outage is not None and outage.over.wait(timeout)
                self._answer({"over": over})
            else:
                self.send_error(HTTPStatus.NOT_FOUND)

        def _answer(self, document: dict) -> None:
            body = json.dumps(document).encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            """Quiet: a test reads the answers."""

    return Control


def main() -> None:
    extend_handlers()
    emulator = Emulator()
    control = http.server.ThreadingHTTPServer(("127.0.0.1", 0), control_handler(emulator))
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({"api": emulator.port, "control": control.server_address[1]}), flush=True)
    sys.stdin.read()  # until the test run closes it


if __name__ == "__main__":
    main()
