"""Running the server: load the engine (in the background, so /healthz answers at once), the node
datasets and the compute processes, and serve the app with uvicorn — in one process, or in
``processes`` processes sharing the port. ``mechscope serve`` (:mod:`..cli.serve`) turns its flags
into a :class:`ServeSettings` and calls :func:`serve`."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
from pathlib import Path

from ..engine.loading import EngineSpec, load_engine
from .config import LOG_FORMAT, Limits, ServerConfig
from .process_tuning import keep_freed_memory, settle_garbage_collector

log = logging.getLogger("mechscope.server")


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Everything one ``mechscope serve`` needs; plain data, handed to each server process as JSON."""

    engine: EngineSpec
    datasets: tuple[str, ...] = ()
    """node dataset specs (local directories or Azure container URLs with prefix)"""
    datasets_required: bool = False
    """fail when a dataset cannot be opened (else: serve without node pages, with a warning)"""
    config: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    host: str = "127.0.0.1"
    port: int = 8000
    processes: int = 1
    log_level: str = "info"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "ServeSettings":
        d = json.loads(text)
        config = d.pop("config")
        limits = Limits(**config.pop("limits"))
        viewer_dir = config.pop("viewer_dir")
        config = ServerConfig(limits=limits, viewer_dir=None if viewer_dir is None else Path(viewer_dir),
                              **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
        engine = EngineSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("engine").items()})
        return cls(engine=engine, config=config, datasets=tuple(d.pop("datasets")), **d)


def load_datasets(settings: ServeSettings) -> dict:
    from .node_datasets import dataset_name, open_node_dataset
    datasets = {}
    for spec in settings.datasets:
        try:
            datasets[dataset_name(spec)] = open_node_dataset(spec)
        except Exception as e:
            if settings.datasets_required:
                raise
            log.warning("no node dataset at %s (%s): node pages are off; build one with `mechscope datasets build`",
                        spec, e)
    for name, ds in datasets.items():
        log.info("node dataset %r: %s", name, getattr(ds, "description", ds))
    return datasets


def build_loader(settings: ServeSettings):
    def load():
        engine = load_engine(settings.engine)
        datasets = load_datasets(settings)
        processes = None
        n = settings.config.compute_processes
        if n > 0:
            from .compute_processes import EngineProcesses
            threads = cores_each(n * settings.processes)
            log.info("starting %d compute processes (%d torch threads each)", n, threads)
            spec = settings.engine
            if os.environ.get("MECHSCOPE_SHARED_WEIGHTS", "1") != "0":   # one copy of the weights per machine
                from .shared_weights import share_engine_weights
                spec = share_engine_weights(engine)
            processes = EngineProcesses(spec, n, torch_threads=threads, log_level=settings.log_level)
            processes.start()
        settle_garbage_collector()
        keep_freed_memory()
        return engine, datasets, processes
    return load


def cores_each(sharers: int) -> int:
    """Torch threads for each of ``sharers`` engine threads or processes splitting the cores (each
    engine call is one torch op stream)."""
    return max(1, (os.cpu_count() or 1) // sharers)


def set_torch_threads(engine_threads: int) -> int:
    """Split the cores between the engine threads of all processes."""
    import torch
    threads = cores_each(engine_threads)
    torch.set_num_threads(threads)
    return threads


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(settings: ServeSettings):
    """The app of one server process: its engine loads in the background (see /readyz)."""
    from .app import create_app
    from .state import ServerState

    config = settings.config
    threads = set_torch_threads(config.workers * settings.processes)
    log.info("torch threads per worker: %d (%d workers × %d processes)", threads, config.workers, settings.processes)
    state = ServerState()
    state.load_in_background(build_loader(settings))
    return create_app(state, config)


_SETTINGS_ENV = "MECHSCOPE_SERVE_SETTINGS_JSON"   # handed to the server processes of --processes N


def app_from_environment():
    """uvicorn's app factory in each process of ``--processes N``."""
    settings = ServeSettings.from_json(os.environ[_SETTINGS_ENV])
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    return build_app(settings)


def serve(settings: ServeSettings) -> None:
    import uvicorn

    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    config = settings.config
    if not _is_loopback(settings.host) and config.auth_token is None:
        log.warning("serving on %s without --auth-token: anyone who can reach this port can use the server",
                    settings.host)
    shown = dataclasses.replace(config, auth_token="***" if config.auth_token else None)
    log.info("serving on http://%s:%d (%s, %d process%s)", settings.host, settings.port, shown, settings.processes,
             "es" if settings.processes > 1 else "")
    common = dict(host=settings.host, port=settings.port, log_level=settings.log_level, proxy_headers=False,
                  server_header=False)
    if settings.processes == 1:
        uvicorn.run(build_app(settings), **common)
        return
    os.environ[_SETTINGS_ENV] = settings.to_json()   # inherited by the server processes only
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=settings.processes, **common)
