"""Blob stores: the same behaviours on a local directory and on a real Azurite service."""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from mechscope.datasets.stores import (
    AzureBlobStore,
    BlobEntry,
    BlobNotFoundError,
    BlobStore,
    InvalidBlobKeyError,
    InvalidStoreSpecError,
    LocalBlobStore,
    RetryPolicy,
    StoreAccessDeniedError,
    StoreUnavailableError,
    copy_tree,
    open_store,
)
from mechscope.inference.errors import InvalidInputError, MechscopeError
from tests.support.azurite import Azurite, module_azurite  # noqa: F401 (module_azurite is the `azurite` fixture)

FAST_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.01, max_delay_s=0.05)




def new_container(azurite: Azurite, public_access: str | None = None, prefix: str = "") -> AzureBlobStore:
    store = AzureBlobStore.from_connection_string(
        azurite.connection_string, f"c{uuid.uuid4().hex[:16]}", prefix=prefix, retry=FAST_RETRY
    )
    store.container_client.create_container(public_access=public_access)
    return store


@pytest.fixture(params=["local", "azure", "azure-prefixed"])
def store(request, tmp_path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "store")
    azurite = request.getfixturevalue("azurite")
    return new_container(azurite, prefix="some/prefix" if request.param == "azure-prefixed" else "")


# ---- behaviours shared by every store --------------------------------------------------------


def test_round_trip_overwrite_size_exists_delete(store: BlobStore):
    assert not store.exists("a/b.json") and store.size("a/b.json") is None
    store.write("a/b.json", b'{"x": 1}')
    assert store.read("a/b.json") == b'{"x": 1}'
    assert store.exists("a/b.json") and store.size("a/b.json") == 8
    store.write("a/b.json", bytearray(b"second"))  # replace
    assert store.read("a/b.json") == b"second"
    store.write("chunks.bin", iter([b"ab", b"", b"cd"]))  # an iterable of chunks
    assert store.read("chunks.bin") == b"abcd"
    store.write("empty", b"")
    assert store.read("empty") == b"" and store.size("empty") == 0
    store.delete("a/b.json")
    assert not store.exists("a/b.json")
    assert sorted(store.list()) == ["chunks.bin", "empty"]


def test_missing_blob_names_store_and_key(store: BlobStore):
    for operation in (lambda: store.read("no/such.json"), lambda: store.delete("no/such.json"),
                      lambda: store.read_range("no/such.json", 0, 1)):
        with pytest.raises(BlobNotFoundError) as info:
            operation()
        assert "'no/such.json'" in str(info.value) and store.description in str(info.value)
        assert info.value.key == "no/such.json" and isinstance(info.value, FileNotFoundError)


def test_read_range(store: BlobStore):
    data = bytes(range(256)) * 4
    store.write("shard/0.bin", data)
    assert store.read_range("shard/0.bin", 0, 10) == data[:10]
    assert store.read_range("shard/0.bin", 300, 123) == data[300:423]
    assert store.read_range("shard/0.bin", 1000, 24) == data[1000:]
    assert store.read_range("shard/0.bin", 1024, 0) == b""
    for start, length in [(1000, 25), (1024, 1), (5000, 3)]:
        with pytest.raises(InvalidInputError, match="runs past the end of blob 'shard/0.bin' \\(1024 bytes\\)"):
            store.read_range("shard/0.bin", start, length)
    for start, length in [(-1, 3), (0, -2)]:
        with pytest.raises(InvalidInputError):
            store.read_range("shard/0.bin", start, length)


def test_list_is_a_sorted_string_prefix_match(store: BlobStore):
    keys = ["b/2.json", "a/10.json", "a/1.json", "a/1/x.json", "ab/1.json", "c.txt"]
    for key in keys:
        store.write(key, key.encode())
    assert list(store.list()) == sorted(keys)
    assert list(store.list("a/")) == ["a/1.json", "a/1/x.json", "a/10.json"]
    assert list(store.list("a/1")) == ["a/1.json", "a/1/x.json", "a/10.json"]
    assert list(store.list("a")) == ["a/1.json", "a/1/x.json", "a/10.json", "ab/1.json"]
    assert list(store.list("zzz/")) == []
    assert list(store.list_entries("c")) == [BlobEntry("c.txt", 5)]


@pytest.mark.parametrize("key", ["", "../x", "a/../../x", "/abs/path", "a\\b", "a//b", "a/", "./a", "C:/x"])
def test_bad_keys_are_rejected_naming_the_key(store: BlobStore, key: str):
    for operation in (lambda: store.write(key, b"x"), lambda: store.read(key), lambda: store.exists(key)):
        with pytest.raises(InvalidBlobKeyError) as info:
            operation()
        assert repr(key) in str(info.value) and info.value.field == "key"


def test_failed_write_leaves_no_blob_and_keeps_the_old_one(store: BlobStore):
    def failing_chunks():
        yield b"first half "
        # Mid-write, the blob must still be invisible (local: only a hidden temp file exists).
        assert not store.exists("new.bin") and list(store.list()) == ["old.bin"]
        raise OSError("disk on fire")

    store.write("old.bin", b"old contents")
    with pytest.raises(OSError, match="disk on fire"):
        store.write("new.bin", failing_chunks())
    with pytest.raises(OSError, match="disk on fire"):
        store.write("old.bin", failing_chunks())
    assert list(store.list()) == ["old.bin"]
    assert store.read("old.bin") == b"old contents"
    assert not store.exists("new.bin")


# ---- local specifics --------------------------------------------------------------------------


def test_local_failed_write_leaves_no_partial_file(tmp_path):
    store = LocalBlobStore(tmp_path)

    def failing_chunks():
        yield b"x" * 1000
        raise RuntimeError("producer crashed")

    with pytest.raises(RuntimeError):
        store.write("dir/blob.bin", failing_chunks())
    assert [p.name for p in (tmp_path / "dir").iterdir()] == []


def test_local_write_is_rename_of_complete_temp_file(tmp_path, monkeypatch):
    """The target only ever appears through os.replace of a fully written, synced temp file."""
    store = LocalBlobStore(tmp_path)
    seen = []
    real_replace = os.replace

    def spying_replace(src, dst):
        seen.append((open(src, "rb").read(), os.path.exists(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    store.write("k.bin", iter([b"abc", b"def"]))
    assert seen == [(b"abcdef", False)]
    assert store.read("k.bin") == b"abcdef"


def test_local_description_and_reserved_temp_names(tmp_path):
    store = LocalBlobStore(tmp_path)
    assert store.description == f"local directory {tmp_path}"
    with pytest.raises(InvalidBlobKeyError):
        store.write("a/.~mechscope-partial-x", b"")


# ---- Azure specifics --------------------------------------------------------------------------


def test_prefixed_store_maps_keys_under_the_prefix(azurite):
    store = new_container(azurite, prefix="data/v1")
    store.write("0/1.json", b"{}")
    names = [b.name for b in store.container_client.list_blobs()]
    assert names == ["data/v1/0/1.json"]
    assert list(store.list()) == ["0/1.json"]
    assert "prefix 'data/v1/'" in store.description


def test_anonymous_read_of_public_container(azurite):
    writer = new_container(azurite, public_access="container")
    container = writer.container_client.container_name
    writer.write("gpt2_small_data/collated-activations/0/0.json", b'{"a": 1}')
    anonymous = AzureBlobStore(azurite.account_url, container, retry=FAST_RETRY)
    assert anonymous.read("gpt2_small_data/collated-activations/0/0.json") == b'{"a": 1}'
    assert list(anonymous.list("gpt2_small_data/")) == ["gpt2_small_data/collated-activations/0/0.json"]
    via_spec = open_store(f"{azurite.account_url}/{container}/gpt2_small_data", retry=FAST_RETRY)
    assert via_spec.read("collated-activations/0/0.json") == b'{"a": 1}'
    with pytest.raises(StoreAccessDeniedError, match=container):
        anonymous.write("x", b"no anonymous writes")


def test_anonymous_read_of_private_container_is_access_denied(azurite):
    writer = new_container(azurite)
    writer.write("k", b"secret")
    anonymous = AzureBlobStore(azurite.account_url, writer.container_client.container_name, retry=FAST_RETRY)
    with pytest.raises(StoreAccessDeniedError) as info:
        anonymous.read("k")
    assert anonymous.description in str(info.value) and "'k'" in str(info.value)


def _container_sas(azurite, container: str, **permissions) -> str:
    return generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )


def test_sas_token_store(azurite):
    owner = new_container(azurite)
    container = owner.container_client.container_name
    sas = _container_sas(azurite, container, read=True, list=True, write=True)
    store = AzureBlobStore(azurite.account_url, container, sas_token=sas, retry=FAST_RETRY)
    store.write("w.bin", b"written with sas")
    assert owner.read("w.bin") == b"written with sas"
    assert list(store.list()) == ["w.bin"] and store.read_range("w.bin", 13, 3) == b"sas"
    assert "sig=" not in store.description
    with pytest.raises(StoreAccessDeniedError, match="'w.bin'"):  # no delete permission
        store.delete("w.bin")
    read_only = open_store(f"{azurite.account_url}/{container}?{_container_sas(azurite, container, read=True)}")
    assert read_only.read("w.bin") == b"written with sas" and "sig=" not in read_only.description


def test_account_key_store(azurite):
    owner = new_container(azurite)
    container = owner.container_client.container_name
    store = AzureBlobStore(azurite.account_url, container, account_key=azurite.account_key, retry=FAST_RETRY)
    store.write("k", b"v")
    assert owner.read("k") == b"v"


def test_missing_container_is_not_found_not_unavailable(azurite):
    store = AzureBlobStore.from_connection_string(azurite.connection_string, "does-not-exist", retry=FAST_RETRY)
    with pytest.raises(BlobNotFoundError, match="container does not exist"):
        store.read("k")
    assert store.size("k") is None


def test_outage_retries_with_backoff_then_recovers(azurite):
    events = []
    retry = RetryPolicy(attempts=4, initial_delay_s=0.05, multiplier=2.0, max_delay_s=1.0, on_retry=events.append)
    store = AzureBlobStore.from_connection_string(
        azurite.connection_string, f"c{uuid.uuid4().hex[:16]}", retry=retry
    )
    store.container_client.create_container()
    store.write("layer/7.json", b"before the outage")
    assert events == []

    azurite.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            store.read("layer/7.json")
        elapsed = time.monotonic() - started
        message = str(info.value)
        assert store.description in message and "'layer/7.json'" in message and "after 4 attempts" in message
        assert info.value.attempts == 4 and info.value.key == "layer/7.json"
        assert isinstance(info.value, MechscopeError)
        assert [(e.attempt, e.delay_s) for e in events] == [(1, 0.05), (2, 0.1), (3, 0.2)]
        assert elapsed >= 0.35  # the backoff sleeps really happened
        events.clear()
        for operation in (lambda: store.write("x", b"y"), lambda: list(store.list("layer/")),
                          lambda: store.exists("layer/7.json")):
            with pytest.raises(StoreUnavailableError, match="is unavailable"):
                operation()
        assert len(events) == 3 * 3
    finally:
        azurite.start()
    events.clear()
    assert store.read("layer/7.json") == b"before the outage"
    assert events == []


def test_not_found_is_not_retried(azurite):
    events = []
    store = AzureBlobStore.from_connection_string(
        azurite.connection_string,
        new_container(azurite).container_client.container_name,
        retry=RetryPolicy(attempts=5, initial_delay_s=0.05, on_retry=events.append),
    )
    with pytest.raises(BlobNotFoundError):
        store.read("missing")
    assert events == []


# ---- open_store -------------------------------------------------------------------------------


def test_open_store_forms(tmp_path):
    local = open_store(str(tmp_path))
    assert isinstance(local, LocalBlobStore) and local.root == tmp_path
    assert open_store(f"file://{tmp_path}").root == tmp_path

    public = open_store("https://openaipublic.blob.core.windows.net/neuron-explainer")
    assert public.description == "Azure container https://openaipublic.blob.core.windows.net/neuron-explainer"
    prefixed = open_store("https://openaipublic.blob.core.windows.net/neuron-explainer/gpt2_small_data/")
    assert prefixed.description.endswith("neuron-explainer (prefix 'gpt2_small_data/')")
    blobfile_style = open_store("az://openaipublic/neuron-explainer/gpt2_small")
    assert blobfile_style.description == (
        "Azure container https://openaipublic.blob.core.windows.net/neuron-explainer (prefix 'gpt2_small/')"
    )
    with_sas = open_store("https://acct.blob.core.windows.net/cont?sv=2025-11-05&sp=r&sig=SECRET")
    assert "SECRET" not in with_sas.description and "acct.blob.core.windows.net/cont" in with_sas.description


def test_open_store_azure_scheme_uses_connection_string_env(azurite):
    owner = new_container(azurite)
    container = owner.container_client.container_name
    owner.write("p/q/r.json", b"via env")
    store = open_store(f"azure://{container}/p", env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    assert store.read("q/r.json") == b"via env"
    with pytest.raises(InvalidStoreSpecError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_store(f"azure://{container}", env={})


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("", "empty"),
        ("s3://bucket/key", "unsupported scheme 's3'"),
        ("https://acct.blob.core.windows.net/", "no container"),
        ("http://127.0.0.1:10000/devstoreaccount1", "needs /<account>/<container>"),
        ("http://acct.blob.core.windows.net/c", "need https"),
    ],
)
def test_open_store_rejects_unknown_specs(spec, problem):
    with pytest.raises(InvalidStoreSpecError, match=problem) as info:
        open_store(spec)
    assert "expected one of" in str(info.value)


def test_open_store_never_echoes_sas_tokens():
    with pytest.raises(InvalidStoreSpecError) as info:
        open_store("https://acct.blob.core.windows.net/?sig=SECRET")
    assert "SECRET" not in str(info.value)


# ---- copy_tree --------------------------------------------------------------------------------


def test_copy_tree_local_to_azurite_to_local(azurite, tmp_path):
    source = LocalBlobStore(tmp_path / "src")
    files = {f"ds/{layer}/{i}.json": os.urandom(100 + 37 * i) for layer in range(3) for i in range(4)}
    files["other/readme.txt"] = b"not under the prefix"
    for key, data in files.items():
        source.write(key, data)
    remote = new_container(azurite, prefix="mirror")
    result = copy_tree(source, remote, "ds/", progress=False)
    expected = {k: v for k, v in files.items() if k.startswith("ds/")}
    assert (result.blobs_copied, result.bytes_copied, result.blobs_skipped) == (
        len(expected), sum(map(len, expected.values())), 0
    )

    back = LocalBlobStore(tmp_path / "back")
    copy_tree(remote, back, progress=True)
    assert {k: back.read(k) for k in back.list()} == expected

    again = copy_tree(source, remote, "ds/", progress=False)  # already there, same sizes
    assert (again.blobs_copied, again.blobs_skipped) == (0, len(expected))
    source.write("ds/0/0.json", b"changed, different size")
    partial = copy_tree(source, remote, "ds/", progress=False)
    assert partial.blobs_copied == 1 and remote.read("ds/0/0.json") == b"changed, different size"
    forced = copy_tree(source, remote, "ds/", progress=False, overwrite=True)
    assert forced.blobs_copied == len(expected)


# ---- 5xx and timeouts: a real HTTP proxy in front of Azurite that misbehaves on demand ----------


# Headers about the connection, not the message. Azurite's "Keep-Alive: timeout=5" in particular
# must not be forwarded: this HTTP/1.0 proxy closes every connection after its response, and a
# client told the connection persists may send its next request on the closing socket and get a
# reset instead of the answer under test (this made the 5xx test flaky).
HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade")


class FlakyProxy:
    """Forwards requests to Azurite, except the next ``failures`` ones: answered with ``mode``
    ('503': HTTP 503 ServerBusy; 'hang': no answer until the client times out). Every answer says
    ``Connection: close``, so each request of the client under test is on a fresh connection."""

    def __init__(self, upstream_port: int):
        import http.server
        import threading

        import httpx

        proxy = self
        self.failures = 0
        self.mode = "503"
        self.requests = 0
        upstream = httpx.Client(base_url=f"http://127.0.0.1:{upstream_port}", timeout=10)

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests += 1
                if proxy.failures > 0:
                    proxy.failures -= 1
                    if proxy.mode == "hang":
                        time.sleep(1.0)
                        return
                    payload = b"<?xml version='1.0'?><Error><Code>ServerBusy</Code><Message>busy</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                response = upstream.request(self.command, self.path, headers=headers, content=body)
                self.send_response(response.status_code)
                for k, v in response.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(response.content)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.content)

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._upstream = upstream

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._upstream.close()


@pytest.fixture
def flaky_proxy(azurite):
    proxy = FlakyProxy(azurite.port)
    yield proxy
    proxy.close()


def test_5xx_is_retried_then_succeeds_or_gives_up(azurite, flaky_proxy):
    owner = new_container(azurite, public_access="container")
    owner.write("k.json", b"payload")
    events = []
    store = AzureBlobStore(
        f"http://127.0.0.1:{flaky_proxy.port}/{azurite.account_name}",
        owner.container_client.container_name,
        retry=RetryPolicy(attempts=3, initial_delay_s=0.01, on_retry=events.append),
    )
    assert store.read("k.json") == b"payload" and events == []  # the proxy forwards faithfully

    flaky_proxy.failures = 2
    assert store.read("k.json") == b"payload"
    assert [(e.attempt, "503" in str(e.error) or "ServerBusy" in str(e.error)) for e in events] == [(1, True), (2, True)]

    events.clear()
    flaky_proxy.failures = 3
    with pytest.raises(StoreUnavailableError, match=r"HTTP 503.*") as info:
        store.read("k.json")
    assert info.value.attempts == 3 and len(events) == 2 and store.description in str(info.value)


def test_timeouts_are_retried(azurite, flaky_proxy):
    owner = new_container(azurite, public_access="container")
    owner.write("k.json", b"payload")
    events = []
    store = AzureBlobStore(
        f"http://127.0.0.1:{flaky_proxy.port}/{azurite.account_name}",
        owner.container_client.container_name,
        retry=RetryPolicy(attempts=3, initial_delay_s=0.01, on_retry=events.append),
        read_timeout_s=0.2,
    )
    flaky_proxy.mode, flaky_proxy.failures = "hang", 1
    started = time.monotonic()
    assert store.read("k.json") == b"payload"
    assert [type(e.error).__name__ for e in events] == ["ServiceResponseTimeoutError"]
    assert time.monotonic() - started < 1.0  # gave up on the hung request, did not wait it out
