"""Hub downloads (huggingface_hub under mechscope's retries, checks and errors) against a real local
HTTP server (tests/support/hub_server.py). The cache is Hugging Face's layout:
``{cache}/hub/models--{owner}--{name}/{refs,blobs,snapshots}``; huggingface_hub asks for a file's
metadata (HEAD) before its body (GET)."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest

from mechscope.inference.errors import CheckpointError, ChecksumError, DownloadError, InvalidInputError
from mechscope.inference.hub import (
    HubFileNotFoundError,
    RetryPolicy,
    download_hub_files,
    hub_file_url,
    hub_snapshot_dir,
)
from tests.support.hub_server import HubServer

REPO = "owner/tiny-gpt2"
FAST_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.001, max_delay_s=0.01)


def _payload(size: int, seed: int) -> bytes:
    """Deterministic, non-repeating bytes (so a misplaced resume would change the file)."""
    blocks = (hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


FILES = {
    "config.json": b'{"n_layer": 2, "n_head": 2, "n_embd": 8}',
    "model.safetensors": _payload(200_000, seed=1),
    "blocks.0.hook_resid_pre/cfg.json": b'{"d_in": 8}',
}


@pytest.fixture(autouse=True)
def _no_ambient_hub_settings(monkeypatch):
    for name in ("MECHSCOPE_HUB_ENDPOINT", "HF_ENDPOINT", "MECHSCOPE_CACHE_DIR", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hub():
    with HubServer({REPO: FILES}) as server:
        yield server


def _download(hub, tmp_path, filenames, **kwargs):
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("progress", False)
    return download_hub_files(REPO, filenames, endpoint=hub.url, cache_dir=tmp_path, **kwargs)


COMMIT = hashlib.sha1(b"main").hexdigest()   # what the test server calls revision main


def _gets(hub, filename: str) -> list:
    return [r for r in hub.requests_for(REPO, filename) if r.method == "GET"]


def _heads(hub, filename: str) -> list:
    return [r for r in hub.requests_for(REPO, filename) if r.method == "HEAD"]


def _cached_files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_url_layout_and_endpoint_from_environment(monkeypatch):
    assert hub_file_url("openai-community/gpt2", "model.safetensors") == (
        "https://huggingface.co/openai-community/gpt2/resolve/main/model.safetensors"
    )
    monkeypatch.setenv("HF_ENDPOINT", "http://hf-mirror.example")
    assert hub_file_url("gpt2", "config.json", revision="refs/pr/1").startswith(
        "http://hf-mirror.example/gpt2/resolve/refs%2Fpr%2F1/"
    )
    monkeypatch.setenv("MECHSCOPE_HUB_ENDPOINT", "http://mirror.example/")
    assert hub_file_url("gpt2", "a/b.json") == "http://mirror.example/gpt2/resolve/main/a/b.json"
    assert hub_file_url("gpt2", "x", endpoint="https://other.example") == "https://other.example/gpt2/resolve/main/x"


def test_downloads_files_into_the_cache_layout(hub, tmp_path):
    snapshot = _download(hub, tmp_path, list(FILES), progress=True)

    assert snapshot == tmp_path / "hub" / "models--owner--tiny-gpt2" / "snapshots" / COMMIT
    assert snapshot == hub_snapshot_dir(REPO, cache_dir=tmp_path)
    for name, content in FILES.items():
        assert (snapshot / name).read_bytes() == content
    assert not any(name.endswith(".incomplete") for name in _cached_files(tmp_path))


def test_a_file_in_the_hugging_face_cache_is_not_downloaded_again(hub, tmp_path):
    """What transformers (or SAELens) put in the Hugging Face cache is what mechscope reads."""
    from huggingface_hub import hf_hub_download
    hf_hub_download(REPO, "config.json", cache_dir=tmp_path / "hub", endpoint=hub.url)
    seen = len(hub.requests)
    snapshot = _download(hub, tmp_path, ["config.json"])
    assert len(hub.requests) == seen and (snapshot / "config.json").read_bytes() == FILES["config.json"]


def test_cache_dir_defaults_to_environment_variable(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("MECHSCOPE_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.setenv("MECHSCOPE_HUB_ENDPOINT", hub.url)
    snapshot = download_hub_files(REPO, ["config.json"], progress=False, retry=FAST_RETRY)
    assert snapshot == tmp_path / "env-cache" / "hub" / "models--owner--tiny-gpt2" / "snapshots" / COMMIT
    assert (snapshot / "config.json").read_bytes() == FILES["config.json"]


def test_second_call_is_served_from_the_cache_without_any_request(hub, tmp_path):
    names = ["config.json", "model.safetensors"]
    kwargs = {"optional": ["tokenizer.json"], "alternatives": [("sae.safetensors", "blocks.0.hook_resid_pre/cfg.json")]}
    _download(hub, tmp_path, names, **kwargs)
    seen = len(hub.requests)
    assert len([r for r in hub.requests if r.method == "HEAD"]) == 5  # 2 files, 1 missing optional, 2 alternatives
    assert len([r for r in hub.requests if r.method == "GET"]) == 3

    snapshot = _download(hub, tmp_path, names, **kwargs)

    assert len(hub.requests) == seen
    assert (snapshot / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_cached_files_are_used_when_the_hub_is_unreachable(hub, tmp_path):
    _download(hub, tmp_path, ["config.json"])
    snapshot = download_hub_files(
        REPO, ["config.json"], endpoint=f"http://127.0.0.1:{_closed_port()}", cache_dir=tmp_path, progress=False
    )
    assert (snapshot / "config.json").read_bytes() == FILES["config.json"]


BIG = _payload(24 << 20, seed=2)   # over huggingface_hub's 10 MiB write chunk, so a cut leaves bytes to resume from


def test_cut_connection_resumes_with_a_range_request(hub, tmp_path):
    hub.add_repo(REPO, {"big.safetensors": BIG})
    hub.cut_connection(REPO, "big.safetensors", after_bytes=15 << 20)

    snapshot = _download(hub, tmp_path, ["big.safetensors"])

    assert (snapshot / "big.safetensors").read_bytes() == BIG
    requests = _gets(hub, "big.safetensors")
    assert len(requests) == 2
    assert "range" not in requests[0].headers
    resumed_at = int(requests[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 15 << 20


def test_server_ignoring_range_restarts_from_scratch(hub, tmp_path):
    hub.add_repo(REPO, {"big.safetensors": BIG})
    hub.cut_connection(REPO, "big.safetensors", after_bytes=15 << 20)
    hub.ignore_range_requests()

    snapshot = _download(hub, tmp_path, ["big.safetensors"])

    assert (snapshot / "big.safetensors").read_bytes() == BIG
    assert "range" in _gets(hub, "big.safetensors")[1].headers


def test_partial_file_left_by_an_earlier_run_is_not_used(hub, tmp_path):
    """huggingface_hub (>= 1.0) downloads into a file unique to the process, so a partial file of an
    earlier run (or of another version) cannot corrupt the download; it is not resumed either."""
    blobs = tmp_path / "hub" / "models--owner--tiny-gpt2" / "blobs"
    blobs.mkdir(parents=True)
    sha256 = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    (blobs / f"{sha256}.incomplete").write_bytes(b"x" * 10_000)

    snapshot = _download(hub, tmp_path, ["model.safetensors"])

    assert (snapshot / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_server_errors_are_retried(hub, tmp_path):
    hub.fail(REPO, "config.json", status=500, times=2)

    snapshot = _download(hub, tmp_path, ["config.json"])

    assert (snapshot / "config.json").read_bytes() == FILES["config.json"]
    assert len(_heads(hub, "config.json")) == 3 and len(_gets(hub, "config.json")) == 1


@pytest.mark.slow
def test_persistent_server_errors_raise_download_error(hub, tmp_path):
    """huggingface_hub's own backoff (about 23 s) before the error: one try of ours."""
    hub.fail(REPO, "config.json", status=503, times=1000)

    with pytest.raises(DownloadError, match="503") as caught:
        _download(hub, tmp_path, ["config.json"], retry=RetryPolicy())

    assert REPO in str(caught.value) and "config.json" in str(caught.value)
    assert len(_heads(hub, "config.json")) > 2 and not _gets(hub, "config.json")   # retried, then given up


def test_missing_required_file_raises_checkpoint_error_naming_it(hub, tmp_path):
    with pytest.raises(CheckpointError) as caught:
        _download(hub, tmp_path, ["config.json", "nope.safetensors"])

    assert isinstance(caught.value, HubFileNotFoundError)
    message = str(caught.value)
    assert "nope.safetensors" in message and REPO in message and "'main'" in message
    assert len(hub.requests_for(REPO, "nope.safetensors")) == 1  # a 404 is not retried (one HEAD)


def test_missing_optional_file_is_fine(hub, tmp_path):
    snapshot = _download(hub, tmp_path, ["config.json"], optional=["generation_config.json"])

    assert (snapshot / "config.json").is_file()
    assert not (snapshot / "generation_config.json").exists()


def test_alternatives_fetch_the_first_file_that_exists(hub, tmp_path):
    snapshot = _download(hub, tmp_path, [], alternatives=[("pytorch_model.bin", "model.safetensors", "config.json")])

    assert (snapshot / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not (snapshot / "pytorch_model.bin").exists()
    assert not (snapshot / "config.json").exists()  # the group stopped at the first hit


def test_alternatives_none_found_raises_naming_all(hub, tmp_path):
    with pytest.raises(HubFileNotFoundError, match="a.bin.*b.bin") as caught:
        _download(hub, tmp_path, [], alternatives=[("a.bin", "b.bin")])
    assert caught.value.filenames == ("a.bin", "b.bin")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_unreachable_hub_raises_download_error_explaining_offline_use(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"

    with pytest.raises(DownloadError) as caught:
        download_hub_files(
            REPO, ["config.json", "model.safetensors"], endpoint=endpoint, cache_dir=tmp_path, progress=False,
        )

    message = str(caught.value)
    assert REPO in message and "config.json" in message and endpoint in message
    assert "local directory" in message and "MECHSCOPE_HUB_ENDPOINT" in message


def test_token_is_sent_and_missing_token_is_explained(hub, tmp_path):
    hub.require_token("s3cret")

    with pytest.raises(DownloadError, match="token"):
        _download(hub, tmp_path, ["config.json"])
    with pytest.raises(DownloadError, match="token was rejected"):
        _download(hub, tmp_path, ["config.json"], token="wrong")
    snapshot = _download(hub, tmp_path, ["config.json"], token="s3cret")

    assert (snapshot / "config.json").read_bytes() == FILES["config.json"]
    assert hub.requests[-1].headers["authorization"] == "Bearer s3cret"


def test_sha256_mismatch_raises_and_leaves_nothing_in_the_cache(hub, tmp_path):
    hub.set_etag(REPO, "model.safetensors", "0" * 64)

    with pytest.raises(ChecksumError, match="sha256"):
        _download(hub, tmp_path, ["model.safetensors"])

    assert not [f for f in _cached_files(tmp_path) if "blobs" in f or "snapshots" in f]


@pytest.mark.parametrize(
    ("repo_id", "filename", "field"),
    [
        ("../evil", "config.json", "repo_id"),
        ("owner/../x", "config.json", "repo_id"),
        ("/abs/path", "config.json", "repo_id"),
        ("owner\\name", "config.json", "repo_id"),
        ("a/b/c", "config.json", "repo_id"),
        (REPO, "../config.json", "filenames"),
        (REPO, "sub/../../x", "filenames"),
        (REPO, "/etc/passwd", "filenames"),
        (REPO, "dir\\file", "filenames"),
        (REPO, "", "filenames"),
    ],
)
def test_bad_repo_id_or_filename_is_rejected_before_any_request(hub, tmp_path, repo_id, filename, field):
    with pytest.raises(InvalidInputError) as caught:
        download_hub_files(repo_id, [filename], endpoint=hub.url, cache_dir=tmp_path, progress=False)

    assert caught.value.field == field
    assert hub.requests == []
    assert _cached_files(tmp_path) == []


def test_filenames_given_as_a_single_string_are_rejected(hub, tmp_path):
    with pytest.raises(InvalidInputError, match="list of file names") as caught:
        download_hub_files(REPO, "config.json", endpoint=hub.url, cache_dir=tmp_path)
    assert caught.value.field == "filenames"


def test_bad_endpoint_is_rejected(monkeypatch, tmp_path):
    with pytest.raises(InvalidInputError) as caught:
        download_hub_files(REPO, ["config.json"], endpoint="ftp://example", cache_dir=tmp_path)
    assert caught.value.field == "endpoint"
    monkeypatch.setenv("MECHSCOPE_HUB_ENDPOINT", "not a url")
    with pytest.raises(InvalidInputError, match="not a url") as caught:
        hub_file_url(REPO, "config.json")
    assert caught.value.field == "MECHSCOPE_HUB_ENDPOINT"


def test_lfs_file_behind_a_redirect_is_checked_against_x_linked_etag(hub, tmp_path):
    hub.redirect_to_cdn(REPO, "model.safetensors")

    snapshot = _download(hub, tmp_path / "good", ["model.safetensors"])

    assert (snapshot / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert [(r.method, r.path) for r in hub.requests] == [
        ("HEAD", "/owner/tiny-gpt2/resolve/main/model.safetensors"),
        ("GET", "/cdn/owner/tiny-gpt2/resolve/main/model.safetensors"),
    ]
    hub.set_etag(REPO, "model.safetensors", "f" * 64)
    with pytest.raises(ChecksumError):
        _download(hub, tmp_path / "bad", ["model.safetensors"])


def test_offline_mode_uses_the_cache_and_explains_a_miss(hub, tmp_path):
    """HF_HUB_OFFLINE=1 (read by huggingface_hub at import: a fresh interpreter): cached files load,
    an uncached one fails at once, naming the local-directory way out, and nothing reaches the hub."""
    import subprocess
    import sys
    _download(hub, tmp_path, ["config.json"])
    seen = len(hub.requests)
    code = ("import sys\nfrom mechscope.inference.hub import download_hub_files\n"
            f"s = download_hub_files({REPO!r}, ['config.json'], endpoint={hub.url!r}, cache_dir={str(tmp_path)!r})\n"
            "print((s / 'config.json').read_text())\n"
            "try:\n"
            f"    download_hub_files({REPO!r}, ['model.safetensors'], endpoint={hub.url!r}, cache_dir={str(tmp_path)!r})\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    assert FILES["config.json"].decode() in out
    assert "DownloadError" in out and "local directory" in out and "HF_HUB_OFFLINE" in out
    assert len(hub.requests) == seen
