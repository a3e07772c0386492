"""One entry point to load any SAE by name or path, and one to save it in any supported format."""

from __future__ import annotations

from pathlib import Path

import torch

from mechscope.inference.errors import InvalidInputError

from . import native_format, saelens_format
from .errors import SAEFormatError
from .fetch import fetch_openai_sae, fetch_saelens_sae
from .openai_format import load_openai_sae, save_openai_sae
from .sae import SparseAutoencoder
from .specs import LocalSAESpec, OpenAISAESpec, SAELensHubSpec, SAESpec, parse_sae_spec

FORMATS = ("mechscope", "saelens", "openai")
_PICKLE_OR_ZIP_MAGIC = (b"PK\x03\x04", b"\x80")


def detect_format(path: str | Path) -> tuple[str, Path]:
    """(format, path to load) for a local SAE file or directory, judged by its content."""
    path = Path(path)
    if not path.exists():
        raise SAEFormatError(f"{path}: no such file or directory")
    if path.is_file():
        if path.name in (native_format.CONFIG_FILENAME, native_format.WEIGHTS_FILENAME):
            return "mechscope", path.parent
        if path.name in (saelens_format.CFG_FILENAME, saelens_format.WEIGHTS_FILENAME):
            return "saelens", path.parent
        with path.open("rb") as handle:
            head = handle.read(4)
        if head.startswith(_PICKLE_OR_ZIP_MAGIC):
            return "openai", path
        raise SAEFormatError(
            f"{path}: not a recognised SAE file (expected an OpenAI torch checkpoint, or a directory "
            f"with {native_format.CONFIG_FILENAME} or {saelens_format.CFG_FILENAME})"
        )
    if (path / native_format.CONFIG_FILENAME).is_file():
        return "mechscope", path
    if (path / saelens_format.CFG_FILENAME).is_file():
        return "saelens", path
    raise SAEFormatError(
        f"{path}: directory holds neither {native_format.CONFIG_FILENAME} (mechscope) nor "
        f"{saelens_format.CFG_FILENAME} (SAELens); contents: {sorted(p.name for p in path.iterdir())[:20]}"
    )


def load_sae(
    spec: "str | Path | SAESpec",
    *,
    cache_dir: str | Path | None = None,
    hook_point: str | None = None,
    dtype: torch.dtype | None = None,
    norm_scaling_factor: float | None = None,
    openai_account_url: str | None = None,
    openai_connection_string: str | None = None,
    hub_endpoint: str | None = None,
    progress: bool = True,
) -> SparseAutoencoder:
    """Load an SAE by name (``openai:...``, ``saelens:...``) or local path; see :mod:`.specs`.

    Remote SAEs are downloaded once into the cache (``cache_dir``, else $MECHSCOPE_CACHE_DIR, else
    ~/.cache/mechscope). ``hook_point`` overrides the recorded/implied hook point (needed for OpenAI
    files outside their public layout). ``norm_scaling_factor`` supplies SAELens'
    ``expected_average_only_in`` factor. ``dtype`` casts the weights (default: as stored).
    """
    parsed = parse_sae_spec(spec)
    if isinstance(parsed, OpenAISAESpec):
        path = fetch_openai_sae(
            parsed, cache_dir, account_url=openai_account_url, connection_string=openai_connection_string, progress=progress
        )
        return load_openai_sae(
            path,
            hook_point=hook_point or parsed.hook_point,
            dtype=dtype,
            model_name=parsed.model,
            source={"name": str(parsed), "blob": parsed.blob_name},
        )
    if isinstance(parsed, SAELensHubSpec):
        directory = fetch_saelens_sae(parsed, cache_dir, endpoint=hub_endpoint)
        sae = saelens_format.load_saelens_sae(
            directory,
            dtype=dtype,
            norm_scaling_factor=norm_scaling_factor,
            source={"name": str(parsed), "repo_id": parsed.repo_id, "folder": parsed.folder, "revision": parsed.revision},
        )
        return _with_hook_point(sae, hook_point)
    assert isinstance(parsed, LocalSAESpec)
    fmt, path = detect_format(parsed.path)
    if fmt == "openai":
        return load_openai_sae(path, hook_point=hook_point, dtype=dtype)
    if fmt == "saelens":
        sae = saelens_format.load_saelens_sae(path, dtype=dtype, norm_scaling_factor=norm_scaling_factor)
    else:
        sae = native_format.load_native_sae(path, dtype=dtype)
    return _with_hook_point(sae, hook_point)


def _with_hook_point(sae: SparseAutoencoder, hook_point: str | None) -> SparseAutoencoder:
    if hook_point is not None:
        sae.config = sae.config.replace(hook_point=hook_point)
    return sae


def save_sae(sae: SparseAutoencoder, path: str | Path, format: str = "mechscope") -> Path:
    """Save ``sae`` as ``format``: 'mechscope' (directory), 'saelens' (directory) or 'openai' (.pt file).

    Raises SAEFormatError when the format cannot represent the SAE (e.g. JumpReLU as OpenAI).
    """
    if format == "mechscope":
        return native_format.save_native_sae(sae, path)
    if format == "saelens":
        return saelens_format.save_saelens_sae(sae, path)
    if format == "openai":
        return save_openai_sae(sae, path)
    raise InvalidInputError(f"unknown SAE format {format!r}; known: {list(FORMATS)}", field="format")
