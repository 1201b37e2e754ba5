"""An S3-compatible server for tests: moto's server mode in a thread, counting the requests it answers.

The counts are taken at the server, so a test that asks "how many times was model.keras downloaded"
counts real GET requests that reached S3, whatever the client side thinks it did.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests

from tests.services import free_port

ACCESS_KEY = "AKIATESTBIGMODEL0001"
SECRET_KEY = "test-secret-never-logged-0001"
REGION = "us-east-1"


class CountingApp:
    """WSGI middleware: records (method, path) of every request before moto answers it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self.lock:
            self.requests[(environ["REQUEST_METHOD"], unquote(environ.get("PATH_INFO", "")))] += 1
        return self.app(environ, start_response)


class _Endpoint:
    """What every S3-compatible test server offers: its endpoint, the variables that reach it, URLs."""

    bucket: str
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a process at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION}

    def url(self, prefix: str) -> str:
        """A store URL inside the bucket."""
        return f"s3://{self.bucket}/{prefix}"


class S3Server(_Endpoint):
    """moto's S3 on a free loopback port, with one bucket made; `gets(suffix)` counts object downloads."""

    def __init__(self, bucket: str = "bigmodel-test") -> None:
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.counter: CountingApp | None = None

    def start(self) -> None:
        """Serve in a daemon thread and create the bucket."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        self.counter = CountingApp(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", self.port, self.counter, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()
        requests.put(f"{self.endpoint}/{self.bucket}", timeout=30).raise_for_status()

    def stop(self) -> None:
        """Shut the server down."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def gets(self, suffix: str) -> int:
        """GET requests so far for object keys ending with `suffix` (downloads, not listings)."""
        assert self.counter is not None
        with self.counter.lock:
            return sum(n for (method, path), n in self.counter.requests.items()
                       if method == "GET" and path.endswith(suffix))

    def multipart_uploads(self) -> list[Any]:
        """Multipart uploads started and neither completed nor aborted."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, region_name=REGION)
        return list(client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))


class MinioServer(_Endpoint):
    """A MinIO server from its binary (only where one is installed), with one bucket made."""

    def __init__(self, data: Path, bucket: str = "bigmodel-test") -> None:
        self.bucket = bucket
        self.data = data
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """Whether a `minio` binary is on PATH."""
        return shutil.which("minio") is not None

    def start(self) -> None:
        """Start MinIO and create the bucket (through s3fs, as the store will use it)."""
        import s3fs

        env = {"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
        argv = [shutil.which("minio") or "minio", "server", str(self.data),
                "--address", f"127.0.0.1:{self.port}", "--console-address", f"127.0.0.1:{free_port()}"]
        self.proc = subprocess.Popen(argv,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.endpoint}/minio/health/live", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        fs = s3fs.S3FileSystem(key=ACCESS_KEY, secret=SECRET_KEY, endpoint_url=self.endpoint,
                               skip_instance_cache=True)
        fs.mkdir(self.bucket)

    def stop(self) -> None:
        """Stop MinIO."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None
