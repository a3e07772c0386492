"""Build a node dataset on a Ray cluster: the corpus split into shards of batches, each built by a
Ray actor that loads the model once, the partial states merged exactly into the one-process result.

    from mechscope.datasets.node_dataset.distributed import BuildJob, ModelSource, build_distributed
    job = BuildJob(ModelSource("gpt2", saes=("openai:...",)), corpus, "azure://datasets", "gpt2-small")
    manifest = build_distributed(job, address="auto", workers=16, gpus_per_worker=1)

How it runs (Ray is an optional extra: ``pip install 'mechscope[distributed]'``):

1. The driver loads the model too (for the build's fingerprint and the final token effects) and
   writes ``{prefix}/_build/ray/plan.json`` (fingerprint, shard size).
2. Calibration: one actor streams the corpus's first batch and returns the per-node values that
   batch fixes (histogram ranges, moment shifts, quantile boundaries: see
   :mod:`.merge`); stored as ``_build/ray/calibration.safetensors``.
3. Shards: ``shard_batches`` batches each (a power of two, so shard boundaries are blocks of the
   power sums' tree). Every actor builds one shard at a time with the same code as the plain
   builder (:meth:`NodeDatasetBuilder._process_batch`), writes the partial state to
   ``_build/ray/shard-NNNNNN.safetensors``, then its commit ``shard-NNNNNN.json`` (size, sha256).
   Each attempt leaves ``_build/ray/attempts/shard-NNNNNN.pid-P.json`` (which process, which node).
4. The driver merges each finished shard as it arrives (the merge is associative and exact), then
   writes the dataset's shards and ``manifest.json`` last, and deletes ``_build/``.

Fault tolerance is Ray's: an actor whose process dies is restarted (``max_restarts``) and its
shard retried (``max_task_retries``). A restarted driver finds the plan, the calibration and the
committed shards in the store and builds only the rest. The result is byte-identical to
:func:`~.builder.build_node_dataset` over the same corpus whatever the number of
workers, the shard size or the order shards finish in, provided the workers (and the driver, while
it writes the dataset) run torch with the one-process build's number of threads (``threads``,
default: the CPUs per worker).

Workers need mechscope (and the model files, for a local path) on their nodes; the store must be
reachable from every node (a shared directory on one machine, Azure for a cluster).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from mechscope.inference.errors import InvalidInputError

from .builder import BUILD_DIR, BuildMismatchError, NodeDatasetBuilder
from .corpus import Corpus
from .merge import (PartialBuild, apply_calibration, calibration_from_bytes, calibration_of,
                                 calibration_to_bytes)
from .config import BuildConfig
from .sampling import SharedSample
from .records import DatasetIntegrityError
from ..stores import open_store

RAY_DIR = f"{BUILD_DIR}/ray"
PLAN_KEY = f"{RAY_DIR}/plan.json"
CALIBRATION_KEY = f"{RAY_DIR}/calibration.safetensors"
DEFAULT_SHARD_BATCHES = 16
SHARDS_QUEUED_PER_ACTOR = 2


class RayUnavailableError(InvalidInputError):
    """Ray is not installed (the optional extra ``mechscope[distributed]``)."""


@dataclass(frozen=True)
class ModelSource:
    """How a worker loads the model and SAEs: the names the CLI takes (``--model``, ``--sae``)."""

    model: str = "organism"
    saes: tuple[str, ...] = ()

    def load(self) -> tuple:
        from mechscope.autoencoders import load_sae
        from mechscope.inference import load_model
        return load_model(self.model, progress=False), [load_sae(spec) for spec in self.saes]


@dataclass(frozen=True)
class BuildJob:
    """Everything a worker needs to build any shard; sent to every actor once."""

    source: ModelSource
    corpus: Corpus
    store: str
    """Store spec (see ``open_store``), opened on every node."""
    prefix: str
    config: BuildConfig = field(default_factory=BuildConfig)
    model_name: str | None = None

    def builder(self, model=None, saes=None) -> NodeDatasetBuilder:  # type: ignore[no-untyped-def]
        if model is None:
            model, saes = self.source.load()
        return NodeDatasetBuilder(model, self.corpus, open_store(self.store), self.prefix, saes=saes or (),
                                  config=self.config, model_name=self.model_name or self.source.model, progress=False)


@dataclass(frozen=True)
class ShardPlan:
    num_batches: int
    shard_batches: int

    def __post_init__(self) -> None:
        b = self.shard_batches
        if isinstance(b, bool) or not isinstance(b, int) or b < 1 or b & (b - 1):
            raise InvalidInputError(f"shard_batches must be a power of two (1, 2, 4, ...), got {b!r}",
                                    field="shard_batches")

    @property
    def num_shards(self) -> int:
        return -(-self.num_batches // self.shard_batches)

    def batches(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_batches
        return start, min(start + self.shard_batches, self.num_batches)


def shard_key(shard: int, suffix: str) -> str:
    return f"{RAY_DIR}/shard-{shard:06d}.{suffix}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the work, without Ray (also what the tests merge by hand) --------------------------------------
def _fresh(builder: NodeDatasetBuilder) -> tuple[dict, SharedSample]:
    return builder.fresh_states(), SharedSample(builder.config, builder.corpus.n_ctx)


def stream_batches(builder: NodeDatasetBuilder, start: int, stop: int, calibration=None) -> PartialBuild:  # type: ignore[no-untyped-def]
    """Stream batches ``start .. stop - 1`` into fresh states (calibrated with ``calibration``, or by
    their first batch when None) and return them as a partial build."""
    builder.states, builder.shared = _fresh(builder)
    if calibration is not None:
        apply_calibration(builder.states, calibration)
    corpus, size = builder.corpus, builder.config.batch_size
    with torch.inference_mode():
        for batch in range(start, stop):
            row0 = batch * size
            builder._process_batch(corpus.rows(row0, min(size, corpus.num_rows - row0)), row0)
    return PartialBuild.from_states(builder.states, builder.shared, start, stop)


def calibrate(builder: NodeDatasetBuilder):  # type: ignore[no-untyped-def]
    """The calibration the corpus's first batch fixes (what a sequential build derives from it)."""
    return calibration_of(stream_batches(builder, 0, 1).groups)


def tokens_in(builder: NodeDatasetBuilder, start: int, stop: int) -> int:
    size, corpus = builder.config.batch_size, builder.corpus
    return (min(stop * size, corpus.num_rows) - min(start * size, corpus.num_rows)) * corpus.n_ctx


class ShardWorker:
    """A Ray actor's body: loads the model once, then builds shards on request."""

    def __init__(self, job: BuildJob, fingerprint: str, threads: int):
        torch.set_num_threads(threads)  # this process is the actor's own
        self.job = job
        self.builder = job.builder()
        if self.builder.fingerprint != fingerprint:
            raise BuildMismatchError(f"worker on {socket.gethostname()} loaded a different build (model, SAEs, "
                                     "corpus or config differ from the driver's): check its model files",
                                     field="model")
        self.store = self.builder.store

    def ready(self) -> bool:
        """Returns once the actor's process has started and loaded the model."""
        return True

    def calibrate(self) -> bytes:
        return calibration_to_bytes(calibrate(self.builder))

    def build(self, plan: ShardPlan, shard: int, calibration: bytes) -> dict:
        pid, started = os.getpid(), time.time()
        attempt = {"shard": shard, "pid": pid, "host": socket.gethostname(), "started": started}
        self.store.write(self.builder._key(f"{RAY_DIR}/attempts/shard-{shard:06d}.pid-{pid}.json"),
                         json.dumps(attempt).encode())
        start, stop = plan.batches(shard)
        partial = stream_batches(self.builder, start, stop, calibration_from_bytes(calibration))
        data = partial.to_bytes({"fingerprint": self.builder.fingerprint, "shard": shard})
        self.store.write(self.builder._key(shard_key(shard, "safetensors")), data)
        commit = {"fingerprint": self.builder.fingerprint, "shard": shard, "batches": [start, stop],
                  "tokens": tokens_in(self.builder, start, stop), "size": len(data), "sha256": _sha256(data),
                  "seconds": time.time() - started, "pid": pid}
        self.store.write(self.builder._key(shard_key(shard, "json")), json.dumps(commit, indent=1).encode())
        return commit


# ---- the driver ------------------------------------------------------------------------------------
def _with_threads(threads: int, fn):  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def require_ray():  # type: ignore[no-untyped-def]
    try:
        import ray
    except ImportError as error:
        raise RayUnavailableError("building on Ray needs the optional extra: pip install 'mechscope[distributed]' "
                                  "(ray>=2.40)", field="ray") from error
    return ray


class DistributedBuild:
    """One build on Ray (see the module docs). Use :func:`build_distributed`."""

    def __init__(self, job: BuildJob, *, shard_batches: int = DEFAULT_SHARD_BATCHES, workers: int | None = None,
                 cpus_per_worker: float = 1, gpus_per_worker: float = 0, threads: int | None = None,
                 retries: int = 3, progress: bool = True, model=None, saes: Sequence | None = None):  # type: ignore[no-untyped-def]
        for name, value in (("workers", workers), ("threads", threads)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}", field=name)
        if cpus_per_worker <= 0 or gpus_per_worker < 0 or retries < 0:
            raise InvalidInputError("cpus_per_worker must be > 0, gpus_per_worker and retries >= 0",
                                    field="cpus_per_worker")
        self.job, self.progress = job, progress
        self.driver = job.builder(model, saes)
        self.plan = ShardPlan(self.driver.num_batches, shard_batches)
        self.workers, self.cpus, self.gpus, self.retries = workers, cpus_per_worker, gpus_per_worker, retries
        self.threads = threads or max(1, int(cpus_per_worker))
        self.timings: dict[str, float] = {}
        """After :meth:`run`: shards built (and resumed); tokens streamed; ``startup_s``, wall seconds from
        starting the actors to all of them loaded and the calibration known; ``stream_s``, from then to the
        last shard merged; ``shard_s``, seconds the workers spent inside shards (summed);
        ``finalize_s``, writing the dataset."""

    def _key(self, key: str) -> str:
        return self.driver._key(key)

    def run(self, *, address: str | None = None, resume: bool = True, overwrite: bool = False) -> dict:
        b = self.driver
        if (finished := b.finished_manifest(overwrite=overwrite)) is not None:
            return finished
        if not resume:
            b._clear_checkpoints(keep=None)
        done = self._committed_shards()
        ray = require_ray()
        own_ray = not ray.is_initialized()
        if own_ray:
            ray.init(address=address or None, log_to_driver=True)
        try:
            merged, tokens, shard_s, startup_s, stream_s = self._build_shards(ray, done)
            streamed = time.perf_counter()
        finally:
            if own_ray:
                ray.shutdown()
        b.states, b.shared = merged.finished(self.plan.num_batches)
        manifest = _with_threads(self.threads, b._finalize)  # token effects: the workers' thread count too
        self.timings = {"shards": self.plan.num_shards, "shards_resumed": len(done), "tokens_streamed": tokens,
                        "startup_s": startup_s, "stream_s": stream_s, "shard_s": shard_s,
                        "finalize_s": time.perf_counter() - streamed}
        return manifest

    # ---- the store: plan, calibration, committed shards -----------------------------------------
    def _committed_shards(self) -> dict[int, dict]:
        b, store = self.driver, self.driver.store
        plan = {"fingerprint": b.fingerprint, "shard_batches": self.plan.shard_batches,
                "num_batches": self.plan.num_batches}
        if store.exists(self._key(PLAN_KEY)):
            old = json.loads(store.read(self._key(PLAN_KEY)))
            if old.get("fingerprint") != b.fingerprint:
                raise BuildMismatchError(f"the unfinished Ray build at {self._key(RAY_DIR)} in {store.description} "
                                         "is of a different build (model, SAEs, corpus or config differ); build "
                                         "without resume (--no-resume) to start over", field="resume")
            if old.get("shard_batches") != self.plan.shard_batches:
                raise BuildMismatchError(f"the unfinished Ray build at {self._key(RAY_DIR)} uses shard_batches="
                                         f"{old.get('shard_batches')}; pass the same (--shard-batches) to resume it, "
                                         "or build without resume (--no-resume)", field="shard_batches")
        else:
            store.write(self._key(PLAN_KEY), json.dumps(plan, indent=1).encode())
        done = {}
        for shard in range(self.plan.num_shards):
            key = self._key(shard_key(shard, "json"))
            if store.exists(key):
                commit = json.loads(store.read(key))
                if commit.get("fingerprint") == b.fingerprint:
                    done[shard] = commit
        return done

    def _read_shard(self, shard: int, commit: dict) -> PartialBuild:
        store, key = self.driver.store, self._key(shard_key(shard, "safetensors"))
        data = store.read(key)
        if len(data) != commit["size"] or _sha256(data) != commit["sha256"]:
            raise DatasetIntegrityError(f"shard blob {key} in {store.description} does not match its commit; "
                                        "build without resume to start over", store=store.description, key=key)
        partial, _ = PartialBuild.from_bytes(data, lambda: _fresh(self.driver))
        if partial.batches != (self.plan.batches(shard),):
            raise DatasetIntegrityError(f"shard blob {key} holds batches {list(partial.batches)}, expected "
                                        f"{self.plan.batches(shard)}", store=store.description, key=key)
        return partial

    def _calibration(self, ray, actor) -> bytes:  # type: ignore[no-untyped-def]
        store, key = self.driver.store, self._key(CALIBRATION_KEY)
        if store.exists(key):
            return store.read(key)
        data = ray.get(actor.calibrate.remote())
        store.write(key, data)
        return data

    # ---- the shards --------------------------------------------------------------------------------
    def _build_shards(self, ray, done: dict[int, dict]) -> tuple[PartialBuild, int, float, float, float]:  # type: ignore[no-untyped-def]
        merged: PartialBuild | None = None
        for shard in sorted(done):
            part = self._read_shard(shard, done[shard])
            merged = part if merged is None else merged.merge(part)
        queue = deque(s for s in range(self.plan.num_shards) if s not in done)
        bar = tqdm(total=self.plan.num_shards, initial=len(done), unit="shard", disable=not self.progress,
                   desc=f"node dataset {self.driver.prefix or '.'} on Ray", smoothing=0)
        tokens, shard_s, started = 0, 0.0, time.perf_counter()
        with bar:
            if not queue:
                assert merged is not None
                return merged, 0, 0.0, 0.0, 0.0
            actors = self._start_actors(ray, len(queue))
            calibration = ray.put(self._calibration(ray, actors[0]))
            ray.get([actor.ready.remote() for actor in actors])
            startup_s, started = time.perf_counter() - started, time.perf_counter()
            in_flight = {}

            def submit(actor) -> None:  # type: ignore[no-untyped-def]
                shard = queue.popleft()
                in_flight[actor.build.remote(self.plan, shard, calibration)] = (actor, shard)

            # Two shards queued per actor: an actor starts its next shard while the driver reads and
            # merges the one it just finished, instead of idling for that round trip.
            for _ in range(SHARDS_QUEUED_PER_ACTOR):
                for actor in actors:
                    if queue:
                        submit(actor)
            while in_flight:
                [ref], _ = ray.wait(list(in_flight), num_returns=1)
                actor, shard = in_flight.pop(ref)
                commit = ray.get(ref)
                part = self._read_shard(shard, commit)
                merged = part if merged is None else merged.merge(part)
                tokens, shard_s = tokens + commit["tokens"], shard_s + commit["seconds"]
                bar.update(1)
                bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9):,.0f} tok/s")
                if queue:
                    submit(actor)
            for actor in actors:
                ray.kill(actor)
        assert merged is not None
        return merged, tokens, shard_s, startup_s, time.perf_counter() - started

    def _start_actors(self, ray, shards: int) -> list:  # type: ignore[no-untyped-def]
        count = self.workers
        if count is None:
            count = max(1, int(ray.cluster_resources().get("CPU", 1) // self.cpus))
        actor = ray.remote(ShardWorker).options(num_cpus=self.cpus, num_gpus=self.gpus,
                                                max_restarts=self.retries, max_task_retries=self.retries)
        return [actor.remote(self.job, self.driver.fingerprint, self.threads) for _ in range(min(count, shards))]


def build_distributed(job: BuildJob, *, address: str | None = None, resume: bool = True, overwrite: bool = False,
                      **options) -> dict:  # type: ignore[no-untyped-def]
    """Build ``job``'s node dataset on the Ray cluster at ``address`` (None: ``RAY_ADDRESS`` or a new
    local cluster; "auto": the cluster this machine belongs to); returns the manifest. ``options``
    go to :class:`DistributedBuild` (shard_batches, workers, cpus_per_worker, gpus_per_worker,
    threads, retries, progress, model, saes)."""
    return DistributedBuild(job, **options).run(address=address, resume=resume, overwrite=overwrite)
