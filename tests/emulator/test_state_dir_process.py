"""Contract: `phota emulator --state-dir` survives a real process restart, after SIGTERM (a clean
stop) and after SIGKILL (no cleanup at all): profiles, jobs, downloads, keys and the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import b64, jpeg_bytes


class Server:
    """One `phota emulator` process and a tiny blocking client for it."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str, key: str) -> None:
        self.proc, self.base_url, self.key = proc, base_url, key
        self.origin = base_url.removesuffix("/v1/phota")

    def call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        """Send one request (``url`` relative to the base URL unless absolute)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url if url.startswith("http") else self.base_url + url,
            data=data,
            method=method,
            headers={"X-API-Key": self.key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw

    def until(self, url: str, field: str, wanted: str) -> dict[str, Any]:
        """Poll ``url`` (bounded) until its JSON ``field`` is ``wanted``."""
        for _ in range(500):
            _, body = self.call("GET", url)
            if body[field] == wanted:
                return dict(body)
            time.sleep(0.02)
        raise AssertionError(f"{url} never reached {wanted}: {body}")


@contextmanager
def serving(folder: Path, port: int = 0) -> Iterator[Server]:
    """Start `phota emulator --state-dir folder`; kill it on the way out if still running."""
    flags = ["--state-dir", str(folder), "--training-seconds", "0.2", "--max-output-side", "64"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "phota_async", "emulator", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        base_url = lines[1].strip().split("=", 1)[1]
        key = lines[2].strip().split("=", 1)[1]
        assert lines[3].strip() == f"state kept in {folder}"
        yield Server(proc, base_url, key)
    finally:
        proc.kill()
        proc.communicate()


def first_life(srv: Server) -> dict[str, Any]:
    """A trained profile, a finished job with a key and its output, one more sync charge."""
    urls = []
    for i in range(5):
        _, grant = srv.call("POST", srv.origin + "/_emulator/uploads")
        request = urllib.request.Request(grant["upload_url"], data=jpeg_bytes(i), method="PUT")
        with urllib.request.urlopen(request, timeout=10):
            urls.append(grant["url"])
    _, added = srv.call("POST", "/profiles/add", {"image_urls": urls, "training_tier": "fast"})
    profile_id = added["profile_id"]
    srv.until(f"/profiles/{profile_id}/status", "status", "READY")
    body = {"image": b64(jpeg_bytes()), "async": True, "response_mode": "urls"}
    _, handle = srv.call("POST", "/enhance", {**body, "client_request_id": "k1"})
    job = srv.until(f"/jobs/{handle['job_id']}", "status", "SUCCEEDED")
    _, image = srv.call("GET", job["result"]["download_urls"][0])
    _, ledger = srv.call("GET", srv.origin + "/_emulator/ledger")
    return {"profile_id": profile_id, "job": job, "image": image, "ledger": ledger, "body": body}


def test_state_survives_sigterm_and_sigkill_restarts(tmp_path: Path) -> None:
    """After SIGTERM, then SIGKILL, a new process serves the same profile, job, download,
    idempotent resubmit (uncharged) and ledger."""
    with serving(tmp_path) as srv:
        before = first_life(srv)
        port, key = srv.origin.rsplit(":", 1)[1], srv.key
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=10) == 0
    with serving(tmp_path, int(port)) as srv:
        assert srv.key == key
        status, profile = srv.call("GET", f"/profiles/{before['profile_id']}/status")
        assert (status, profile["status"]) == (200, "READY")
        assert srv.call("GET", f"/jobs/{before['job']['job_id']}") == (200, before["job"])
        url = before["job"]["result"]["download_urls"][0]
        assert srv.call("GET", url) == (200, before["image"])
        _, handle = srv.call("POST", "/enhance", {**before["body"], "client_request_id": "k1"})
        assert handle["job_id"] == before["job"]["job_id"]
        assert srv.call("GET", srv.origin + "/_emulator/ledger") == (200, before["ledger"])
        srv.call("POST", "/enhance", {"image": before["body"]["image"]})  # one more charge
        _, ledger = srv.call("GET", srv.origin + "/_emulator/ledger")
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
    assert len(ledger["entries"]) == len(before["ledger"]["entries"]) + 1
    with serving(tmp_path, int(port)) as srv:
        assert srv.call("GET", srv.origin + "/_emulator/ledger") == (200, ledger)
        assert srv.call("GET", url) == (200, before["image"])
