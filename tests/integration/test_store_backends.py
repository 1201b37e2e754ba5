"""One store suite, run against a local folder and an S3-compatible server (moto; MinIO where installed)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bigmodel import store as store_module
from bigmodel.config import Settings
from bigmodel.errors import InvalidRequest, StoreError
from bigmodel.store import Store
from tests.s3server import ACCESS_KEY, SECRET_KEY, MinioServer, S3Server

pytestmark = pytest.mark.integration

BLOCK = 5 * 2**20  # S3's smallest multipart part: keeps "large object" tests large enough yet quick


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    server = MinioServer(tmp_path_factory.mktemp("minio"))
    server.start()
    yield server
    server.stop()


# MinIO joins where its binary is installed; moto's S3 server always runs.
@pytest.fixture(params=["local", "s3", *(["minio"] if MinioServer.available() else [])])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple]:
    """(kind, store, server): a fresh store root per test on each backend."""
    monkeypatch.setattr(store_module, "STREAM_BLOCK_BYTES", BLOCK)
    if request.param == "local":
        yield "local", Store(str(tmp_path / "store")), None
        return
    server = request.getfixturevalue("s3_server" if request.param == "s3" else "minio_server")
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    # Settings read the endpoint; credentials reach botocore from the standard variables only.
    settings = Settings.from_env({**server.env, "BIGMODEL_STORE_URL": server.url(tmp_path.name)})
    yield request.param, Store.from_settings(settings), server


def test_write_read_overwrite_and_uri(backend) -> None:
    kind, store, _ = backend
    assert store.write_bytes("a/b.bin", b"one") == 3
    assert store.read_bytes("a/b.bin") == b"one" and store.size("a/b.bin") == 3
    store.write_json("a/b.bin", {"v": 2})
    assert store.read_json("a/b.bin") == {"v": 2}
    assert store.uri("a/b.bin").startswith("file://" if kind == "local" else "s3://")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("a/missing.bin")


def test_readers_see_the_old_or_the_whole_new_file(backend) -> None:
    # Given a file that a writer keeps replacing with whole versions of a different byte
    _, store, _ = backend
    size = 256 * 1024
    store.write_bytes("race.bin", b"a" * size)
    seen: set[tuple[int, bytes]] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            data = store.read_bytes("race.bin")
            seen.add((len(data), bytes(set(data))))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(20):
        store.write_bytes("race.bin", (b"b" if i % 2 else b"c") * size)
    stop.set()
    reader.join()
    # Then every read was one whole version, never a mix or a short file
    assert seen and all(length == size and len(kinds) == 1 for length, kinds in seen), seen


def test_a_streamed_large_object_appears_only_when_complete(backend) -> None:
    # Given a multipart-sized upload in progress (two parts already sent)
    kind, store, server = backend
    chunk = os.urandom(BLOCK)
    digest = hashlib.sha256()
    with store.writer("big/blob.bin") as fh:
        for _ in range(2):
            fh.write(chunk)
            digest.update(chunk)
        # Then nobody sees it yet
        assert not store.exists("big/blob.bin") and store.listdir("big") == []
        with pytest.raises(FileNotFoundError):
            store.read_bytes("big/blob.bin")
        fh.write(b"tail")
        digest.update(b"tail")
    # And when the block ends it is there, whole
    assert store.size("big/blob.bin") == 2 * BLOCK + 4
    assert hashlib.sha256(store.read_bytes("big/blob.bin")).hexdigest() == digest.hexdigest()
    if kind == "s3":
        assert server.gets("big/blob.bin") >= 1 and server.multipart_uploads() == []


def test_a_failed_write_leaves_nothing_behind(backend, tmp_path: Path) -> None:
    kind, store, server = backend
    store.write_bytes("keep/old.bin", b"old")
    with pytest.raises(RuntimeError), store.writer("keep/new.bin") as fh:
        fh.write(os.urandom(BLOCK + 1))  # past one part: a multipart upload has started on S3
        raise RuntimeError("the source broke")
    with pytest.raises(RuntimeError), store.writer("keep/old.bin") as fh:
        fh.write(b"half of a replacement")
        raise RuntimeError("the source broke")
    assert store.listdir("keep") == ["old.bin"] and store.read_bytes("keep/old.bin") == b"old"
    assert not store.exists("keep/new.bin")
    if kind == "local":
        assert os.listdir(store.local_path("keep")) == ["old.bin"]  # no temporary file left either
    if kind == "s3":
        assert server.multipart_uploads() == []  # the started upload was aborted, not left to bill


def test_put_file_streams_a_large_local_file(backend, tmp_path: Path) -> None:
    _, store, _ = backend
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(2 * BLOCK + 123))
    assert store.put_file("models/m/1/model.keras", local) == 2 * BLOCK + 123
    assert store.read_bytes("models/m/1/model.keras") == local.read_bytes()


def test_listing_folders_that_are_only_prefixes(backend) -> None:
    _, store, _ = backend
    store.write_bytes("a/b/c.txt", b"c")
    store.write_bytes("a/d.txt", b"d")
    assert store.listdir("") == ["a"] and store.listdir("a") == ["b", "d.txt"]
    assert store.listdir("a/b") == ["c.txt"]
    assert store.exists("a") and store.exists("a/b") and store.exists("a/b/c.txt")
    assert not store.exists("a/x") and not store.exists("nope")
    assert store.listdir("nope") == [] and store.listdir("a/d.txt") == []
    assert list(store.walk_files("a")) == ["b/c.txt", "d.txt"] and list(store.walk_files("nope")) == []
    # Deleting the only file of a folder deletes the folder, as a key prefix vanishes on S3
    store.delete("a/b/c.txt")
    assert not store.exists("a/b") and store.listdir("a") == ["d.txt"]
    store.delete("a")
    assert not store.exists("a") and store.listdir("") == []
    store.delete("a")  # deleting what is not there is not an error


def test_traversal_is_refused(backend) -> None:
    _, store, _ = backend
    for bad in ("../x", "a/../../x", "/etc/passwd", "a//b", ".hidden", "a/./b", "a\\b"):
        with pytest.raises(InvalidRequest):
            store.write_bytes(bad, b"x")
        with pytest.raises(InvalidRequest):
            store.read_bytes(bad)
    with pytest.raises(InvalidRequest):
        store.tenant("../other")
    assert store.listdir("") == []


def test_tenant_folders_are_separate(backend) -> None:
    _, store, _ = backend
    acme, beta = store.tenant("acme"), store.tenant("beta")
    acme.write_bytes("datasets/x/meta.json", b"{}")
    assert acme.exists("datasets/x/meta.json") and not beta.exists("datasets/x/meta.json")
    assert beta.listdir("datasets") == [] and acme.listdir("datasets") == ["x"]
    assert store.listdir("tenants") == ["acme"]
    assert store.read_bytes("tenants/acme/datasets/x/meta.json") == b"{}"
    assert "/tenants/acme/datasets/x/meta.json" in acme.uri("datasets/x/meta.json")


def test_check_writable(backend) -> None:
    _, store, _ = backend
    store.check_writable()
    assert store.listdir("") == []


def test_s3_errors_name_the_failure_not_the_credentials(s3_server: S3Server,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    store = Store("s3://no-such-bucket/x", options={"endpoint_url": s3_server.endpoint})
    with pytest.raises(StoreError) as err:
        store.write_bytes("a.bin", b"x")
    with pytest.raises(StoreError) as read_err:
        store.check_writable()
    for text in (str(err.value), str(read_err.value), caplog.text):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    assert "NoSuchBucket" in str(err.value) and "a.bin" in str(err.value)


def test_settings_carry_the_endpoint_not_the_keys() -> None:
    env = {"BIGMODEL_STORE_URL": "s3://b/p", "AWS_ENDPOINT_URL": "http://minio:9000",
           "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    settings = Settings.from_env(env)
    assert settings.store_options == {"endpoint_url": "http://minio:9000"}
    assert SECRET_KEY not in repr(settings) and ACCESS_KEY not in repr(settings)
    assert Settings.from_env({"AWS_ENDPOINT_URL": "http://minio:9000"}).store_options == {}  # a folder


def test_listing_sees_what_another_machine_wrote(backend) -> None:
    # Given a folder this process has listed once
    kind, store, server = backend
    store.write_bytes("shared/mine.txt", b"1")
    assert store.listdir("shared") == ["mine.txt"]
    # When another machine writes beside it (another client, not this store object)
    if kind == "local":
        (store.local_path("shared") / "theirs.txt").write_bytes(b"2")
    else:
        import boto3

        client = boto3.client("s3", endpoint_url=server.endpoint)
        client.put_object(Bucket=server.bucket, Key=store.path("shared/theirs.txt").split("/", 1)[1],
                          Body=b"2")
    # Then the next listing shows it: no cached answer
    assert store.listdir("shared") == ["mine.txt", "theirs.txt"] and store.exists("shared/theirs.txt")
