"""One copy of the weights per machine: the server's model and SAE tensors, written once to
safetensors files and memory-mapped by the server and by every compute process.

Each compute process used to load its own model and SAEs (and the server its own): GPT-2 small with
four 32k-latent SAEs is ~1.3 GB per copy, GPT-2 XL 6 GB. Here the server, once it has loaded its
engine, writes each tensor as it holds it (after any dtype conversion or weight processing) to
``model.safetensors`` and ``sae-<i>.safetensors`` in a private temporary directory, maps them
(copy-on-write, ``MAP_PRIVATE``: nothing writes the weights, so every page stays the one page of
the file in the page cache), and switches its own engine to the mapped tensors, freeing its
loaded copy. A compute process builds its engine around the same files: its weights cost it page
table entries, not memory. :class:`SharedEngineSpec` is the picklable recipe a compute process
gets; :meth:`SharedEngineSpec.cleanup` deletes the files (the server calls it at shutdown).

CPU only: on CUDA the server process owns the GPU and serves from threads (see ``serve``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path

import torch

log = logging.getLogger("mechscope.server")

WEIGHTS_DIR_ENV = "MECHSCOPE_WEIGHTS_DIR"
"""where the shared weight files go (default: the system's temporary directory)"""

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def map_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of one copy-on-write memory map of it (no copy:
    pages are read from the page cache as touched, and shared by every process mapping the file)."""
    path = Path(path)
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    size = path.stat().st_size
    data = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size))
    start = 8 + header_len
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        raw = data[start + lo:start + hi]
        if (start + lo) % dtype.itemsize:   # safetensors aligns its tensors; a file that does not is copied
            raw = raw.clone()
        out[name] = raw.view(dtype).reshape(info["shape"])
    return out


def _return_freed_memory() -> None:
    """Hand freed heap back to the kernel (glibc keeps freed blocks below its mmap threshold, and
    most weight tensors are below it once it has grown); nothing happens on another C library."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(path))


@dataclasses.dataclass(frozen=True)
class SharedEngineSpec:
    """How to build the server's engine around its shared weight files (picklable)."""

    directory: str
    model_config: object                       # the model's GPT2Config
    sae_configs: tuple = ()                    # SAEConfig of each SAE, in the engine's order
    sae_sources: tuple = ()                    # each SAE's .source (the format it came from), if any

    @property
    def model_file(self) -> Path:
        return Path(self.directory) / "model.safetensors"

    def sae_file(self, i: int) -> Path:
        return Path(self.directory) / f"sae-{i}.safetensors"

    def load_model(self):  # type: ignore[no-untyped-def]
        from mechscope.inference import GPT2
        with torch.device("meta"):
            model = GPT2(self.model_config)
        model.load_state_dict(map_safetensors(self.model_file), assign=True, strict=True)
        return model.eval().requires_grad_(False)

    def load_saes(self) -> list:
        from mechscope.autoencoders import SparseAutoencoder
        saes = []
        for i, (config, source) in enumerate(zip(self.sae_configs, self.sae_sources)):
            with torch.device("meta"):
                sae = SparseAutoencoder(config)
            sae.load_state_dict(map_safetensors(self.sae_file(i)), assign=True, strict=True)
            if source is not None:
                sae.source = source
            saes.append(sae.eval().requires_grad_(False))
        return saes

    def load_engine(self):  # type: ignore[no-untyped-def]
        """An engine on the mapped weights (what a compute process runs)."""
        from ..engine import Engine
        return Engine(self.load_model(), self.load_saes())

    def cleanup(self) -> None:
        """Delete the weight files (processes that mapped them keep their mappings)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def share_engine_weights(engine, directory: str | Path | None = None) -> SharedEngineSpec:  # type: ignore[no-untyped-def]
    """Write ``engine``'s model and SAE tensors to files, switch ``engine`` to memory maps of them
    (its loaded copy is freed) and return the spec compute processes build their engines from."""
    parent = directory or os.environ.get(WEIGHTS_DIR_ENV) or None
    where = Path(tempfile.mkdtemp(prefix="mechscope-weights-", dir=parent))
    saes = list(engine.saes.values())
    spec = SharedEngineSpec(directory=str(where), model_config=engine.model.cfg,
                            sae_configs=tuple(s.config for s in saes),
                            sae_sources=tuple(getattr(s, "source", None) for s in saes))
    try:
        _save(engine.model.state_dict(), spec.model_file)
        engine.model.load_state_dict(map_safetensors(spec.model_file), assign=True, strict=True)
        for i, sae in enumerate(saes):
            _save(sae.state_dict(), spec.sae_file(i))
            sae.load_state_dict(map_safetensors(spec.sae_file(i)), assign=True, strict=True)
    except BaseException:
        spec.cleanup()
        raise
    engine.model.requires_grad_(False)
    for sae in saes:
        sae.requires_grad_(False)
    _return_freed_memory()   # the loaded copy, now unreferenced
    size = sum(p.stat().st_size for p in where.iterdir())
    log.info("weights shared through %s (%.0f MB, mapped by the server and each compute process)", where, size / 1e6)
    return spec
