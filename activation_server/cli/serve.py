"""``mechscope serve``: load a model, its SAEs and node datasets, and serve the API and the viewer.

    mechscope serve                                  # the organism, its SAEs and datasets, 127.0.0.1:8000
    mechscope serve --model gpt2 --sae openai:gpt2-small/resid_delta_mlp_v5_32k/3 --port 8080
    MECHSCOPE_AUTH_TOKEN=secret mechscope serve --host 0.0.0.0 --allowed-origins https://lab.example.org

Every flag has an environment variable (MECHSCOPE_MODEL, MECHSCOPE_SAES and MECHSCOPE_DATASETS
comma-separated, MECHSCOPE_HOST, MECHSCOPE_PORT, MECHSCOPE_AUTH_TOKEN, MECHSCOPE_ALLOWED_ORIGINS
comma-separated, MECHSCOPE_WORKERS, MECHSCOPE_COMPUTE_PROCESSES, MECHSCOPE_PROCESSES, MECHSCOPE_MAX_QUEUE, MECHSCOPE_GATHER_MS,
MECHSCOPE_VIEWER_DIR); flags win. Prefer the
environment variable for the token (a flag shows in the process list). The server answers /healthz
at once and /readyz (and the API) once loading has finished.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

from mechscope.inference.errors import InvalidInputError

from ..engine.loading import EngineSpec
from ..http.config import DEFAULT_VIEWER_DIR, Limits, ServerConfig
from ..http.serve import ServeSettings, serve

DEFAULT_ORGANISM_DATASETS = Path("data/datasets/organism")


def _env_list(env: Mapping[str, str], name: str) -> list[str]:
    return [x.strip() for x in env.get(name, "").split(",") if x.strip()]


def add_serve_subcommand(subparsers, env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    p = subparsers.add_parser("serve", help="serve the REST API and the neuron viewer",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=env.get("MECHSCOPE_MODEL", "organism"),
                   help="organism (default), gpt2, gpt2-medium, ... or a checkpoint directory")
    p.add_argument("--sae", action="append", default=None, metavar="NAME|PATH",
                   help="an SAE to load (repeatable); default: the organism's SAEs for the organism, none otherwise")
    p.add_argument("--no-saes", action="store_true", help="load no SAEs")
    p.add_argument("--datasets", action="append", default=None, metavar="DIR|URL",
                   help="a node dataset (local directory or Azure container URL with prefix; repeatable); "
                        f"default for the organism: {DEFAULT_ORGANISM_DATASETS} when it exists")
    p.add_argument("--host", default=env.get("MECHSCOPE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env.get("MECHSCOPE_PORT", "8000")))
    p.add_argument("--auth-token", default=env.get("MECHSCOPE_AUTH_TOKEN") or None,
                   help="require 'Authorization: Bearer TOKEN' on /api/ (prefer MECHSCOPE_AUTH_TOKEN)")
    p.add_argument("--allowed-origins", nargs="+", default=_env_list(env, "MECHSCOPE_ALLOWED_ORIGINS") or None,
                   metavar="ORIGIN", help="CORS allow-list (default: any localhost origin)")
    p.add_argument("--workers", type=int, default=int(env.get("MECHSCOPE_WORKERS", "2")),
                   help="engine calls run at once (default 2)")
    p.add_argument("--compute-processes", type=int,
                   default=int(env.get("MECHSCOPE_COMPUTE_PROCESSES", str(default_compute_processes()))),
                   help="worker processes answering attribution requests (the viewer's node tables), each with "
                        "its own copy of the model and SAEs (default: one per core, at most 4; here "
                        f"{default_compute_processes()}); 0: threads of the server process")
    p.add_argument("--processes", type=int, default=int(env.get("MECHSCOPE_PROCESSES", "1")),
                   help="HTTP server processes sharing the port, each with its own model, SAEs, compute processes, "
                        "workers and result cache (default 1)")
    p.add_argument("--max-queue", type=int, default=int(env.get("MECHSCOPE_MAX_QUEUE", "16")),
                   help="engine calls that may wait for a worker before requests get 503 (default 16)")
    p.add_argument("--cache-size", type=int, default=128, help="results kept for identical requests (0: off)")
    p.add_argument("--batch-prompts", type=int, default=int(env.get("MECHSCOPE_BATCH_PROMPTS", "16")),
                   help="attribution requests that arrive together share one forward/backward pass of at most "
                        "this many prompts (default 16; 1: no sharing)")
    p.add_argument("--gather-ms", type=float, default=float(env.get("MECHSCOPE_GATHER_MS", ServerConfig.gather_ms)),
                   help="how long a node-table call waits, after the last arrival, for the clients the previous call "
                        f"answered, so that concurrent users keep sharing passes (default {ServerConfig.gather_ms:g}; "
                        "0: never waits)")
    p.add_argument("--max-prompt-tokens", type=int, default=None, help="default: the model's context")
    p.add_argument("--max-prompts", type=int, default=Limits.max_prompts)
    p.add_argument("--max-top-k", type=int, default=Limits.max_top_k)
    p.add_argument("--max-sweep-cells", type=int, default=Limits.max_sweep_cells)
    p.add_argument("--max-new-tokens", type=int, default=Limits.max_new_tokens)
    p.add_argument("--max-body-bytes", type=int, default=Limits.max_body_bytes)
    p.add_argument("--viewer-dir", type=Path, default=Path(env.get("MECHSCOPE_VIEWER_DIR", DEFAULT_VIEWER_DIR)),
                   help="the built neuron viewer (default: neuron_viewer/dist)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    from mechscope.inference.devices import add_device_arguments
    add_device_arguments(p, env)   # on CUDA the server process owns the GPU: no compute processes
    p.set_defaults(func=cmd_serve, _serve_env=env)
    return p


def _compute_processes(args: argparse.Namespace) -> int:
    """--compute-processes, except on a GPU: one process owns it and its threads share it."""
    from mechscope.inference.devices import placement_from_args
    return 0 if placement_from_args(args).torch_device.type == "cuda" else args.compute_processes


def default_compute_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    limits = Limits(max_prompt_tokens=args.max_prompt_tokens, max_prompts=args.max_prompts, max_top_k=args.max_top_k,
                    max_sweep_cells=args.max_sweep_cells, max_new_tokens=args.max_new_tokens,
                    max_body_bytes=args.max_body_bytes)
    try:
        return ServerConfig(limits=limits, workers=args.workers, max_queue=args.max_queue, cache_size=args.cache_size,
                            batch_prompts=args.batch_prompts, compute_processes=_compute_processes(args),
                            gather_ms=args.gather_ms,
                            auth_token=args.auth_token, allowed_origins=tuple(args.allowed_origins or ()) or None,
                            viewer_dir=args.viewer_dir)
    except ValueError as e:   # a flag out of range: the CLI's typed error, not a traceback
        raise InvalidInputError(f"{e} (see mechscope serve --help)") from e


def _sae_specs(args: argparse.Namespace) -> list[str]:
    if args.no_saes:
        return []
    return args.sae if args.sae is not None else _env_list(args._serve_env, "MECHSCOPE_SAES")


def engine_spec(args: argparse.Namespace) -> EngineSpec:
    """The model and SAEs to load: the flags' SAEs, else the organism's own for the organism."""
    specs = _sae_specs(args)
    from mechscope.inference.devices import placement_from_args
    place = placement_from_args(args)
    return EngineSpec(model=args.model, saes=tuple(specs),
                      organism_saes=not specs and args.model == "organism" and not args.no_saes,
                      device=place.device, dtype=place.dtype)


def dataset_specs(args: argparse.Namespace) -> tuple[list[str], bool]:
    """(node dataset specs, whether they were asked for): the flags' or environment's, else the
    organism's default directory for the organism (used only if it exists)."""
    specs = args.datasets if args.datasets is not None else _env_list(args._serve_env, "MECHSCOPE_DATASETS")
    if specs:
        return list(specs), True
    return ([str(DEFAULT_ORGANISM_DATASETS)] if args.model == "organism" else []), False


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    if args.processes < 1:
        raise InvalidInputError(f"--processes must be >= 1, got {args.processes}", field="processes")
    specs, required = dataset_specs(args)
    return ServeSettings(engine=engine_spec(args), datasets=tuple(specs), datasets_required=required,
                         config=config_from_args(args), host=args.host, port=args.port, processes=args.processes,
                         log_level=args.log_level)


def cmd_serve(args: argparse.Namespace) -> int:
    serve(settings_from_args(args))
    return 0
