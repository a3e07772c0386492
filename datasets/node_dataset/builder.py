"""Build a node dataset: stream a corpus through a model (SAEs spliced in) and store, for every MLP
neuron, attention head and SAE latent, its top examples, samples, statistics and token effects.

    from mechscope.datasets.node_dataset.builder import build_node_dataset, BuildConfig
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    manifest = build_node_dataset(model, TaskSuiteCorpus(rows=3000), LocalBlobStore("data"), "organism",
                                  saes=[sae], config=BuildConfig())

What a node's activation is:

* MLP neuron: ``blocks.L.mlp.hook_post`` at each token.
* SAE latent: ``<point>.hook_sae_acts_post`` at each token. Spliced with its error term an SAE
  leaves the forward pass unchanged, so the builder computes the same latents as ``sae.encode`` of
  the activation at the hook point, without splicing or decoding.
* Attention head h: for a (query q, key k) pair, the write norm ``||pattern[q,k] · v[k] @ W_O[h]||``
  (TDB's ``attn_write_norm``) = ``pattern[q,k] · ||v[k] @ W_O[h]||`` since patterns are >= 0; the
  per-key norms come from ``v`` and the Gram matrix ``W_O[h] W_O[h]^T`` (no ``[.., d_model]`` tensor
  per head). The head's activation at a token is the **max over keys** of its query row (so a
  top example is a row where the head writes one strong thing, as TDB ranks token pairs); moments
  and histograms describe this per-token activation. Top and sample windows also store the
  window's token-pair matrix (lower triangle, row by row); keys before the window are not in it.

Resumability: every ``checkpoint_every`` batches the running state is written under
``{prefix}/_build/step-N/`` and committed by ``{prefix}/_build/checkpoint.json`` (sizes and sha256
of the state blobs, the build fingerprint); a killed build restarted with ``resume=True`` continues
from the last checkpoint and produces byte-identical blobs (same torch version and thread count).
The finished dataset's shards are written first and ``manifest.json`` last; any manifest from an
earlier build is deleted before a build starts, so readers never accept a half-written dataset.

The forward pass stops after the last hooked point (a private exception raised at
``ln_final.hook_scale``): logits are never computed, which skips the unembedding, the largest
matmul of small models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from safetensors.torch import load as st_load_torch
from safetensors.torch import save as st_save_torch
from tqdm import tqdm

from mechscope.inference.errors import InvalidInputError
from mechscope.inference.vocabulary import shared_unembedding_mask

from .corpus import Corpus, as_corpus
from .effects import sae_write_vectors, token_effects
from .config import BuildConfig
from .groups import GroupSpec, group_specs
from .sampling import SharedSample
from .state import GroupState
from .records import (ATTN_HEAD, FORMAT_NAME, FORMAT_VERSION, MANIFEST_KEY, MLP_NEURON, SAE_LATENT, SHARED_KEY,
                           DatasetIntegrityError, crc32, encode_index, encode_record, shard_keys)
from ..stores import BlobStore, join_key

BUILD_DIR = "_build"
CHECKPOINT_KEY = f"{BUILD_DIR}/checkpoint.json"


class BuildMismatchError(InvalidInputError):
    """A checkpoint or finished dataset at the prefix was made by a different build."""


class _StopForward(Exception):
    """Raised by a hook once every needed activation of a batch is processed."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class NodeDatasetBuilder:
    """One build of one dataset (see the module docs). Use :func:`build_node_dataset`."""

    def __init__(self, model, corpus, store: BlobStore, prefix: str, *, saes: Sequence = (),  # type: ignore[no-untyped-def]
                 config: BuildConfig | None = None, model_name: str | None = None, progress: bool = True,
                 on_batch: Callable[[int], None] | None = None):
        from mechscope.autoencoders import SAESplice
        self.model, self.store, self.prefix = model, store, prefix.strip("/")
        self.corpus: Corpus = as_corpus(corpus)
        self.config = config or BuildConfig()
        self.splices = [s if isinstance(s, SAESplice) else SAESplice(s) for s in saes]
        self.model_name = model_name or getattr(model.cfg, "name", "model")
        self.progress, self.on_batch = progress, on_batch
        self.timings: dict[str, float] = {}
        """After :meth:`run`: seconds spent streaming the corpus and writing the dataset."""
        if self.corpus.n_ctx > model.cfg.n_ctx:
            raise InvalidInputError(f"corpus rows have {self.corpus.n_ctx} tokens, more than the model's context of "
                                    f"{model.cfg.n_ctx}", field="corpus")
        self.specs = group_specs(model, self.splices, self.config.kinds)
        # With its error term a spliced SAE leaves the forward pass unchanged, so its latents are
        # read by encoding the activation at its hook point: no decoding, no splice needed.
        self._sae_at = {s.hook_point: s.sae for s in self.splices}
        if not self.specs:
            raise InvalidInputError("nothing to build: no node groups for these kinds (SAE latents need saes=...)",
                                    field="kinds")
        cfg = self.config
        n_ctx = self.corpus.n_ctx
        if cfg.window > n_ctx:
            raise InvalidInputError(f"window={cfg.window} exceeds the corpus context of {n_ctx} tokens", field="window")
        self.states: dict[str, GroupState] = {}  # allocated by run(), once it knows there is work to do
        self.shared = SharedSample(cfg, n_ctx)
        self.num_batches = -(-self.corpus.num_rows // cfg.batch_size)
        self._gram = {}
        self._tri = torch.tril_indices(cfg.window, cfg.window)
        self.fingerprint = self._fingerprint()

    # ---- identity ------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        parts = {
            "format": FORMAT_VERSION,
            "model": _tensor_digest(self.model.state_dict()),
            "saes": [{"hook_point": s.hook_point, "weights": _tensor_digest(s.sae.tensors())} for s in self.splices],
            "corpus": self.corpus.describe(),
            "config": self.config.to_dict(),
        }
        return _sha256(json.dumps(parts, sort_keys=True).encode())

    def _key(self, key: str) -> str:
        return join_key(self.prefix, key)

    # ---- run -----------------------------------------------------------------------------------
    def run(self, *, resume: bool = True, overwrite: bool = False) -> dict:
        """Build (or finish building) the dataset; returns its manifest."""
        if (finished := self.finished_manifest(overwrite=overwrite)) is not None:
            return finished
        self.states = self.fresh_states()
        start_batch = self._restore() if resume else 0
        if not resume:
            self._clear_checkpoints(keep=None)
        started = time.perf_counter()
        self._stream(start_batch)
        streamed = time.perf_counter()
        manifest = self._finalize()
        self.timings = {"stream_s": streamed - started, "finalize_s": time.perf_counter() - streamed,
                        "tokens_streamed": (min(self.num_batches * self.config.batch_size, self.corpus.num_rows)
                                            - min(start_batch * self.config.batch_size, self.corpus.num_rows))
                        * self.corpus.n_ctx}
        return manifest

    def fresh_states(self) -> dict[str, GroupState]:
        n_ctx, d_model = self.corpus.n_ctx, self.model.cfg.d_model
        return {s.name: GroupState(s.n_nodes, self.config, n_ctx, token_pair=s.token_pair, d_model=d_model,
                                   num_batches=self.num_batches) for s in self.specs}

    def finished_manifest(self, *, overwrite: bool) -> dict | None:
        """The manifest of this very build if it is already finished at the prefix; a different
        finished dataset there is an error, or (``overwrite``) unpublished so that it can be rebuilt."""
        existing = self._existing_manifest()
        if existing is None:
            return None
        if existing.get("fingerprint") == self.fingerprint:
            return existing
        if not overwrite:
            raise BuildMismatchError(
                f"{self.store.description} already holds a different node dataset at '{self.prefix}'; "
                "pass overwrite=True (--overwrite) to replace it", field="prefix")
        self.store.delete(self._key(MANIFEST_KEY))
        return None

    def _existing_manifest(self) -> dict | None:
        key = self._key(MANIFEST_KEY)
        if not self.store.exists(key):
            return None
        try:
            return json.loads(self.store.read(key))
        except json.JSONDecodeError:
            return {}

    def _stream(self, start_batch: int) -> None:
        cfg, corpus = self.config, self.corpus
        total_tokens = corpus.num_rows * corpus.n_ctx
        done_rows = min(start_batch * cfg.batch_size, corpus.num_rows)
        bar = tqdm(total=total_tokens, initial=done_rows * corpus.n_ctx, unit="tok", unit_scale=True,
                   desc=f"node dataset {self.prefix or '.'}", disable=not self.progress, smoothing=0.1)
        with bar, torch.inference_mode():
            for batch in range(start_batch, self.num_batches):
                row0 = batch * cfg.batch_size
                tokens = corpus.rows(row0, min(cfg.batch_size, corpus.num_rows - row0))
                self._process_batch(tokens, row0)
                bar.update(tokens.numel())
                done = batch + 1
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < self.num_batches:
                    self._checkpoint(done)
                if self.on_batch is not None:
                    self.on_batch(done)

    def _process_batch(self, tokens: torch.Tensor, row0: int) -> None:
        rand = self.shared.update(tokens, row0)
        hooks: list[tuple[str, Callable]] = []
        stash: dict[int, torch.Tensor] = {}
        for spec in self.specs:
            state = self.states[spec.name]
            if spec.kind == ATTN_HEAD:
                layer = spec.layer
                hooks.append((f"blocks.{layer}.attn.hook_v", lambda x, ctx, layer=layer: stash.__setitem__(layer, x)))
                hooks.append((spec.capture, lambda x, ctx, layer=layer, state=state:
                              self._heads(_host(x), _host(stash.pop(layer)), layer, state, tokens, row0, rand)))
            elif spec.kind == SAE_LATENT:
                sae = self._sae_at[spec.hook_point]
                hooks.append((spec.hook_point, lambda x, ctx, state=state, sae=sae:
                              state.update(_host(sae.encode(x)), tokens, row0, rand)))
            else:
                hooks.append((spec.capture, lambda x, ctx, state=state: state.update(_host(x), tokens, row0, rand)))
        if not any(s.hook_point.startswith("ln_final") for s in self.splices):
            hooks.append(("ln_final.hook_scale", _raise_stop))
        try:
            self.model(tokens, fwd_hooks=hooks)
        except _StopForward:
            pass

    def _heads(self, pattern, v, layer, state: GroupState, tokens, row0, rand) -> None:  # type: ignore[no-untyped-def]
        w_o = _host(self.model.h[layer].attn.W_O.detach())  # [H, dh, D]
        if layer not in self._gram:
            self._gram[layer] = w_o @ w_o.transpose(1, 2)  # [H, dh, dh]
        vg = torch.einsum("bkhd,hde->bkhe", v, self._gram[layer])
        v_norm = (vg * v).sum(-1).clamp_(min=0).sqrt_().permute(0, 2, 1)  # [B, H, K]
        pair = pattern * v_norm[:, :, None, :]  # [B, H, Q, K]
        acts = pair.amax(-1).permute(0, 2, 1)  # [B, Q, H]
        tri_q, tri_k = self._tri[0], self._tri[1]

        def pair_fn(b: torch.Tensor, n: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
            q = start.long()[:, None] + tri_q
            k = start.long()[:, None] + tri_k
            return pair[b.long()[:, None], n.long()[:, None], q, k]

        def write_fn(b: torch.Tensor, n: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
            b, n, pos = b.long(), n.long(), pos.long()
            key = pair[b, n, pos].argmax(-1)
            vo = torch.einsum("md,mde->me", v[b, key, n], w_o[n])
            return vo * pattern[b, n, pos, key][:, None]

        state.update(acts, tokens, row0, rand, pair_fn=pair_fn, write_fn=write_fn)

    # ---- checkpoints ---------------------------------------------------------------------------
    def _checkpoint(self, batches_done: int) -> None:
        step = f"{BUILD_DIR}/step-{batches_done:08d}"
        blobs = {}
        for name, state in [*self.states.items(), ("_shared", self.shared)]:
            data = st_save_torch({k: v.contiguous() for k, v in state.state_dict().items()})
            key = f"{step}/{name}.safetensors"
            self.store.write(self._key(key), data)
            blobs[name] = {"key": key, "size": len(data), "sha256": _sha256(data)}
        checkpoint = {"fingerprint": self.fingerprint, "batches_done": batches_done, "blobs": blobs}
        self.store.write(self._key(CHECKPOINT_KEY), json.dumps(checkpoint, indent=1).encode())
        self._clear_checkpoints(keep=step)

    def _clear_checkpoints(self, keep: str | None) -> None:
        base = self._key(BUILD_DIR) + "/"
        for key in list(self.store.list(base)):
            rel = key[len(self._key("")) + 1:] if self.prefix else key
            if keep is not None and (rel.startswith(keep + "/") or rel == CHECKPOINT_KEY):
                continue
            self.store.delete(key)

    def _restore(self) -> int:
        key = self._key(CHECKPOINT_KEY)
        if not self.store.exists(key):
            return 0
        checkpoint = json.loads(self.store.read(key))
        if checkpoint.get("fingerprint") != self.fingerprint:
            raise BuildMismatchError(
                f"the checkpoint at {key} in {self.store.description} was made by a different build (model, SAEs, "
                "corpus or config differ); build without resume (--no-resume) to start over", field="resume")
        for name, target in [*self.states.items(), ("_shared", self.shared)]:
            entry = checkpoint["blobs"][name]
            data = self.store.read(self._key(entry["key"]))
            if len(data) != entry["size"] or _sha256(data) != entry["sha256"]:
                raise DatasetIntegrityError(f"checkpoint blob {entry['key']} in {self.store.description} does not "
                                            "match checkpoint.json; build without resume to start over",
                                            store=self.store.description, key=entry["key"])
            target.load_state_dict(st_load_torch(data))
        return int(checkpoint["batches_done"])

    # ---- the finished dataset ------------------------------------------------------------------
    def _finalize(self) -> dict:
        blobs: dict[str, dict] = {}

        def put(key: str, data: bytes) -> dict:
            self.store.write(self._key(key), data)
            entry = {"key": key, "size": len(data), "sha256": _sha256(data)}
            blobs[key] = entry
            return entry

        sh, rand_order = self.shared.ordered()  # outputs depend on the kept entries, not their slots
        groups = []
        for spec in self.specs:
            shard, index = self._encode_group(spec, rand_order)
            shard_key, index_key = shard_keys(spec.name)
            groups.append({**spec.describe(), "shard": put(shard_key, shard), "index": put(index_key, index)})
        shared = encode_record({"rand_row": sh["rand_row"].numpy(), "rand_start": sh["rand_start"].numpy(),
                                "rand_tok": sh["rand_tok"].numpy()}, {})
        put(SHARED_KEY, shared)
        tokens_seen = int(next(iter(self.states.values())).t["count"])
        cfg = self.model.cfg
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "model": {"name": self.model_name, "n_layer": cfg.n_layers, "n_head": cfg.n_heads, "d_model": cfg.d_model,
                      "d_mlp": cfg.d_mlp, "n_ctx": cfg.n_ctx, "tokenizer": "gpt2"},
            "saes": [{"hook_point": s.hook_point, "n_latents": s.sae.n_latents, "d_in": s.sae.d_in,
                      "activation": s.sae.config.activation} for s in self.splices],
            "corpus": self.corpus.describe(),
            "rows_seen": self.corpus.num_rows,
            "tokens_seen": tokens_seen,
            "config": self.config.to_dict(),
            "groups": groups,
            "shared": blobs[SHARED_KEY],
        }
        self.store.write(self._key(MANIFEST_KEY), json.dumps(manifest, indent=1, sort_keys=True).encode())
        self._clear_checkpoints(keep=None)
        return manifest

    @functools.cached_property
    def _shared_tokens(self) -> torch.Tensor:
        """Tokens left out of promoted/suppressed lists (once per build: ~1 s for GPT-2's vocabulary)."""
        return shared_unembedding_mask(self.model)

    def _encode_group(self, spec: GroupSpec, rand_order: torch.Tensor) -> tuple[bytes, bytes]:
        state = self.states[spec.name]
        ordered = state.ordered(rand_order)
        t = {k: v.numpy() for k, v in ordered.items()}
        moments = {k: v.numpy() for k, v in state.moments().items()}
        vectors = self._write_vectors(spec, ordered)
        effects = None
        if vectors is not None:
            effects = [e.numpy() for e in token_effects(self.model, vectors, self.config.logit_tokens,
                                                        shared=self._shared_tokens)]
        q, s = self.config.quantile_bins, self.config.quantile_samples
        count = int(t["count"])
        records, offsets, lengths, crcs = [], [], [], []
        offset = 0
        for i in range(spec.n_nodes):
            keep = t["top_row"][i] >= 0
            arrays = {name: t[f"top_{name}"][i][keep] for name in ("val", "row", "pos", "start", "tok", "act")}
            arrays = {f"top_{k}": v for k, v in arrays.items()}
            qs = slice(i * q, (i + 1) * q)
            for name in ("val", "row", "pos", "start", "tok", "act"):
                arrays[f"q_{name}"] = t[f"q_{name}"][qs].reshape(q, s, *t[f"q_{name}"].shape[2:])
            arrays["q_bounds"] = t["q_bounds"][i]
            arrays["rand_act"] = t["rand_act"][i]
            if spec.token_pair:
                arrays["top_pair"] = t["top_pair"][i][keep]
                arrays["q_pair"] = t["q_pair"][qs].reshape(q, s, -1)
                arrays["rand_pair"] = t["rand_pair"][i]
            arrays["stats"] = np.array([moments["mean"][i], moments["variance"][i], moments["skewness"][i],
                                        moments["kurtosis"][i], moments["density"][i], t["vmin"][i], t["vmax"][i],
                                        count], dtype=np.float64)
            arrays["hist"] = t["hist"][i]
            arrays["hist_range"] = np.array([t["hist_lo"][i], t["hist_width"][i]], dtype=np.float32)
            if effects is not None:
                arrays["promoted_ids"], arrays["promoted_vals"] = effects[0][i].astype(np.int32), effects[1][i]
                arrays["suppressed_ids"], arrays["suppressed_vals"] = effects[2][i].astype(np.int32), effects[3][i]
            meta = {"kind": spec.kind, "layer": spec.layer, "index": i, "hook_point": spec.hook_point}
            data = encode_record(arrays, meta)
            records.append(data)
            offsets.append(offset)
            lengths.append(len(data))
            crcs.append(crc32(data))
            offset += len(data)
        index = encode_index(np.array(offsets), np.array(lengths), np.array(crcs))
        return b"".join(records), index

    def _write_vectors(self, spec: GroupSpec, ordered: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if spec.kind == MLP_NEURON:
            return self.model.h[spec.layer].mlp.c_proj.weight.detach()
        if spec.kind == ATTN_HEAD:  # summed in display order, so the bits do not depend on slot order
            valid = (ordered["top_row"] >= 0).float()  # [H, k]
            total = (ordered["top_write"] * valid[..., None]).sum(1)
            return total / valid.sum(1, keepdim=True).clamp(min=1)
        splice = next(s for s in self.splices if s.hook_point == spec.hook_point)
        return sae_write_vectors(self.model, spec.hook_point, splice.sae.W_dec.detach())


def _raise_stop(x: torch.Tensor, ctx) -> None:  # type: ignore[no-untyped-def]
    raise _StopForward


def build_node_dataset(model, corpus, store: BlobStore, prefix: str, *, saes: Sequence = (),  # type: ignore[no-untyped-def]
                       config: BuildConfig | None = None, model_name: str | None = None, resume: bool = True,
                       overwrite: bool = False, progress: bool = True,
                       on_batch: Callable[[int], None] | None = None) -> dict:
    """Build the node dataset of ``model`` over ``corpus`` (a :class:`~.corpus.Corpus` or a
    LongTensor ``[rows, n_ctx]``) at ``prefix`` of ``store``; returns the manifest.

    ``saes``: SparseAutoencoders (spliced at their config's hook point) or SAESplices. With
    ``resume`` (default) a killed build continues from its last checkpoint. An existing dataset of
    the same build is returned as is; a different one is replaced only with ``overwrite``.
    ``on_batch(batches_done)`` is called after every batch (and its checkpoint, if any).
    """
    builder = NodeDatasetBuilder(model, corpus, store, prefix, saes=saes, config=config, model_name=model_name,
                                 progress=progress, on_batch=on_batch)
    return builder.run(resume=resume, overwrite=overwrite)


def _host(x):  # type: ignore[no-untyped-def]
    """Activations as the build state keeps them: float32 on the CPU (a no-op for a float32 CPU
    model; a model on a GPU or in bfloat16/float16 hands over each batch's activations here)."""
    return x if x.device.type == "cpu" and x.dtype == torch.float32 else x.float().cpu()
