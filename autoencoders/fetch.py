"""Downloads of public SAEs into a local cache (OpenAI's Azure container, SAELens hub repos)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mechscope.inference.errors import DownloadError

from .specs import OpenAISAESpec, SAELensHubSpec

OPENAI_ACCOUNT_URL = "https://openaipublic.blob.core.windows.net"
OPENAI_CONTAINER = "sparse-autoencoder"
AZURE_API_VERSION = "2025-11-05"
"""Pinned: Azurite 3.35 rejects the newest version azure-storage-blob 12.31 would send."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else $MECHSCOPE_CACHE_DIR, else ~/.cache/mechscope."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("MECHSCOPE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mechscope"


def openai_cache_path(spec: OpenAISAESpec, cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "openai-sae" / OPENAI_CONTAINER / spec.blob_name


def fetch_openai_sae(
    spec: OpenAISAESpec,
    cache_dir: str | Path | None = None,
    account_url: str | None = None,
    connection_string: str | None = None,
    progress: bool = True,
) -> Path:
    """Local path of OpenAI's checkpoint for ``spec``, downloaded (anonymously) on first use.

    ``account_url`` (default ``$MECHSCOPE_OPENAI_ACCOUNT_URL``, else OpenAI's public account) or
    ``connection_string`` (default ``$MECHSCOPE_OPENAI_CONNECTION_STRING``; e.g. Azurite's) point at
    another Blob service holding the same container layout (a mirror; what ``mechscope serve
    --sae openai:...`` reads, as it has no flag for it).
    """
    account_url = account_url or os.environ.get("MECHSCOPE_OPENAI_ACCOUNT_URL") or None
    connection_string = connection_string or os.environ.get("MECHSCOPE_OPENAI_CONNECTION_STRING") or None
    target = openai_cache_path(spec, cache_dir)
    if target.is_file():
        return target
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient
    from tqdm.auto import tqdm

    if connection_string:
        service = BlobServiceClient.from_connection_string(connection_string, api_version=AZURE_API_VERSION)
    else:
        service = BlobServiceClient(account_url or OPENAI_ACCOUNT_URL, credential=None, api_version=AZURE_API_VERSION)
    blob = service.get_blob_client(OPENAI_CONTAINER, spec.blob_name)
    where = f"{blob.url}"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            stream = blob.download_blob()
            with tqdm(total=stream.size, unit="B", unit_scale=True, desc=str(spec), disable=not progress) as bar:
                written = 0
                for chunk in stream.chunks():
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        if written != stream.size:
            raise DownloadError(f"{where}: received {written} bytes, expected {stream.size}")
        os.replace(tmp_name, target)
    except ResourceNotFoundError:
        raise DownloadError(f"{where}: no such blob (SAE {spec} not found)") from None
    except AzureError as err:
        raise DownloadError(f"{where}: download failed: {type(err).__name__}: {str(err).splitlines()[0]}") from err
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


SAELENS_FILES = ("cfg.json", "sae_weights.safetensors")
SAELENS_OPTIONAL_FILES = ("sparsity.safetensors",)


def fetch_saelens_sae(
    spec: SAELensHubSpec, cache_dir: str | Path | None = None, endpoint: str | None = None
) -> Path:
    """Local directory of a SAELens SAE in a hub repo (downloaded through mechscope.inference.hub)."""
    from mechscope.inference.hub import download_hub_files

    prefix = f"{spec.folder}/" if spec.folder else ""
    snapshot = download_hub_files(
        spec.repo_id,
        [prefix + name for name in SAELENS_FILES],
        revision=spec.revision,
        cache_dir=cache_dir,
        endpoint=endpoint,
        optional=tuple(prefix + name for name in SAELENS_OPTIONAL_FILES),
    )
    return Path(snapshot) / spec.folder if spec.folder else Path(snapshot)
