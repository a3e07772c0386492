"""``mechscope datasets ...``: build, copy, list and export node datasets.

  mechscope datasets build [--model organism] [--sae SPEC ...] [--rows N] [--out STORE] [--prefix NAME]
                           [--no-resume] [--overwrite] [--ray [ADDRESS] [--workers N] [--shard-batches N]]
  mechscope datasets push SRC DST [--prefix NAME]      copy datasets to a (remote) store, manifests last
  mechscope datasets pull SRC DST [--prefix NAME]      the same, the other way round
  mechscope datasets ls STORE                          the datasets a store holds
  mechscope datasets export-tdb SRC DST [--prefix NAME] [--dst-prefix P]   write TDB's NeuronRecord files

STORE, SRC and DST are store specs (a local directory, https://<account>.blob.core.windows.net/<container>,
azure://<container> with $AZURE_STORAGE_CONNECTION_STRING, ... see mechscope.datasets.stores.open_store).
Wire into the main parser with ``add_datasets_subcommands(subparsers)``.
"""

from __future__ import annotations

import argparse
import json

DEFAULT_OUT = "data/datasets"


def _cmd_build(args: argparse.Namespace) -> int:
    from mechscope.autoencoders import load_sae
    from mechscope.datasets.node_dataset.builder import NodeDatasetBuilder
    from mechscope.datasets.node_dataset.corpus import TaskSuiteCorpus
    from mechscope.datasets.node_dataset.config import BuildConfig
    from mechscope.datasets.stores import open_store
    from mechscope.inference import load_model

    from mechscope.inference.devices import placement_from_args
    place = placement_from_args(args)
    model = load_model(args.model, device=place.torch_device, dtype=place.torch_dtype)
    saes = [load_sae(spec).to(device=place.torch_device, dtype=place.torch_dtype) for spec in args.sae]
    config = BuildConfig(top_k=args.top_k, batch_size=args.batch_size, seed=args.seed,
                         checkpoint_every=args.checkpoint_every,
                         kinds=tuple(args.kinds) if args.kinds else BuildConfig.kinds)
    corpus = TaskSuiteCorpus(seed=args.corpus_seed, num_rows=args.rows, first_row=args.first_row,
                             n_ctx=model.cfg.n_ctx if args.n_ctx is None else args.n_ctx)
    prefix = args.prefix or _default_prefix(args.model)
    if args.ray is not None:  # --ray: shards built on a Ray cluster (datasets_ray)
        from .datasets_ray import build_on_ray
        return build_on_ray(args, model, saes, corpus, config, prefix)
    store = open_store(args.out)
    builder = NodeDatasetBuilder(model, corpus, store, prefix, saes=saes, config=config, progress=not args.quiet,
                                 model_name=str(args.model))
    manifest = builder.run(resume=not args.no_resume, overwrite=args.overwrite)
    print(f"node dataset '{prefix}' in {store.description}: {_summary(manifest)}")
    if builder.timings:
        rate = builder.timings["tokens_streamed"] / max(builder.timings["stream_s"], 1e-9)
        print(f"streamed {builder.timings['tokens_streamed']} tokens at {rate:.0f} tokens/s; "
              f"wrote the dataset in {builder.timings['finalize_s']:.1f} s")
    return 0


def _default_prefix(model: str) -> str:
    name = str(model).rstrip("/").rsplit("/", 1)[-1]
    return name or "model"


def _summary(manifest: dict) -> str:
    kinds: dict[str, int] = {}
    for g in manifest.get("groups", []):
        kinds[g["kind"]] = kinds.get(g["kind"], 0) + g["n_nodes"]
    nodes = ", ".join(f"{n} {k}" for k, n in kinds.items())
    model = manifest.get("model", {}).get("name", "?")
    return f"model {model}; {nodes}; {manifest.get('tokens_seen', 0)} tokens"


def find_datasets(store, prefix: str = "") -> list[str]:  # type: ignore[no-untyped-def]
    """Prefixes of the committed node datasets in ``store`` (keys ending in manifest.json)."""
    from mechscope.datasets.node_dataset.records import MANIFEST_KEY
    found = []
    for key in store.list(prefix):
        if key == MANIFEST_KEY or key.endswith("/" + MANIFEST_KEY):
            found.append(key[: -len(MANIFEST_KEY)].rstrip("/"))
    return found


def copy_datasets(src, dst, prefix: str = "", *, progress: bool = True) -> list[str]:  # type: ignore[no-untyped-def]
    """Copy every committed dataset under ``prefix``: its blobs first, its manifest last, so an
    interrupted copy never leaves a manifest pointing at missing blobs (run it again to finish)."""
    from mechscope.datasets.node_dataset.records import MANIFEST_KEY, NodeDatasetError
    from mechscope.datasets.stores import copy_tree, join_key
    datasets = find_datasets(src, prefix)
    if not datasets:
        raise NodeDatasetError(f"no node dataset (no {MANIFEST_KEY}) under '{prefix}' in {src.description}",
                               store=src.description)
    for ds in datasets:
        manifest = json.loads(src.read(join_key(ds, MANIFEST_KEY)))
        keys = [g[part]["key"] for g in manifest["groups"] for part in ("shard", "index")]
        keys.append(manifest["shared"]["key"])
        for key in keys:
            copy_tree(src, dst, join_key(ds, key), progress=progress)
        dst.write(join_key(ds, MANIFEST_KEY), src.read(join_key(ds, MANIFEST_KEY)))
    return datasets


def _cmd_copy(args: argparse.Namespace) -> int:
    from mechscope.datasets.stores import open_store
    src, dst = open_store(args.src), open_store(args.dst)
    for ds in copy_datasets(src, dst, args.prefix or "", progress=not args.quiet):
        print(f"copied node dataset '{ds}' from {src.description} to {dst.description}")
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from mechscope.datasets.node_dataset import NodeDataset
    from mechscope.datasets.node_dataset.records import NodeDatasetError
    from mechscope.datasets.stores import open_store
    store = open_store(args.store)
    datasets = find_datasets(store, args.prefix or "")
    if not datasets:
        print(f"no node datasets in {store.description}")
    for ds in datasets:
        try:
            print(f"{ds or '.'}: {_summary(NodeDataset(store, ds).manifest)}")
        except NodeDatasetError as error:
            print(f"{ds or '.'}: unreadable ({error})")
    return 0


def _cmd_export_tdb(args: argparse.Namespace) -> int:
    from mechscope.datasets.node_dataset import NodeDataset, export_tdb
    from mechscope.datasets.stores import open_store
    src, dst = open_store(args.src), open_store(args.dst)
    paths = export_tdb(NodeDataset(src, args.prefix or ""), dst, args.dst_prefix or "", progress=not args.quiet)
    for group, path in paths.items():
        print(f"{group}: {path}")
    return 0


def _cmd_ensure_organism(args: argparse.Namespace) -> int:
    from mechscope.datasets.node_dataset.organism import ensure_organism_dataset
    try:
        from mechscope.autoencoders.organism_saes import load_organism_saes
        saes = load_organism_saes()
    except Exception as error:  # noqa: BLE001 - build without latents rather than not at all
        print(f"organism SAEs unavailable ({error}); building neurons and heads only")
        saes = []
    path = ensure_organism_dataset(args.out, rows=args.rows, saes=saes, progress=not args.quiet)
    print(f"organism dataset ready at {path}")
    return 0


def add_datasets_subcommands(subparsers) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    """Add ``datasets`` with its subcommands to the main parser's subparsers."""
    datasets = subparsers.add_parser("datasets", help="build, copy, list and export node datasets",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = datasets.add_subparsers(dest="datasets_command", required=True)

    build = sub.add_parser("build", help="build the top-activating example dataset of a model")
    build.add_argument("--model", default="organism", help="organism (default), a hub name, or a directory")
    build.add_argument("--sae", action="append", default=[], metavar="SPEC",
                       help="an SAE to include (openai:..., saelens:..., or a path); repeatable")
    build.add_argument("--rows", type=int, default=3000, help="corpus rows (default 3000)")
    build.add_argument("--first-row", type=int, default=10_000_000, help="first task-suite row of the corpus")
    build.add_argument("--corpus-seed", type=int, default=0)
    build.add_argument("--n-ctx", type=int, default=None, help="tokens per row (default: the model's context)")
    build.add_argument("--out", default=DEFAULT_OUT, help=f"store spec to write to (default {DEFAULT_OUT})")
    build.add_argument("--prefix", default=None, help="dataset name inside the store (default: the model's name)")
    build.add_argument("--kinds", nargs="+", choices=["mlp_neuron", "attn_head", "sae_latent"], default=None)
    build.add_argument("--top-k", type=int, default=20)
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--checkpoint-every", type=int, default=20, help="batches between checkpoints (0: never)")
    build.add_argument("--seed", type=int, default=0, help="seed of the random and quantile samples")
    build.add_argument("--resume", dest="no_resume", action="store_false", default=False,  # (was True: never resumed)
                       help="continue a killed build from its last checkpoint (the default)")
    build.add_argument("--no-resume", dest="no_resume", action="store_true", help="start over")
    build.add_argument("--overwrite", action="store_true", help="replace a different dataset at the prefix")
    build.add_argument("--quiet", action="store_true")
    from .datasets_ray import add_ray_arguments  # --ray [ADDRESS], --workers, --shard-batches, ...
    add_ray_arguments(build)
    from mechscope.inference.devices import add_device_arguments
    add_device_arguments(build)
    build.set_defaults(func=_cmd_build)

    for name, help_text in (("push", "copy datasets from SRC to a (remote) store DST"),
                            ("pull", "copy datasets from a (remote) store SRC to DST")):
        copy = sub.add_parser(name, help=help_text)
        copy.add_argument("src")
        copy.add_argument("dst")
        copy.add_argument("--prefix", default="", help="only datasets under this prefix")
        copy.add_argument("--quiet", action="store_true")
        copy.set_defaults(func=_cmd_copy)

    ensure = sub.add_parser("ensure-organism", help="build the organism's dataset (with its SAEs) if missing or stale")
    ensure.add_argument("--out", default=DEFAULT_OUT, help=f"local directory (default {DEFAULT_OUT})")
    ensure.add_argument("--rows", type=int, default=3000)
    ensure.add_argument("--quiet", action="store_true")
    ensure.set_defaults(func=_cmd_ensure_organism)

    ls = sub.add_parser("ls", help="list the node datasets in a store")
    ls.add_argument("store")
    ls.add_argument("--prefix", default="")
    ls.set_defaults(func=_cmd_ls)

    export = sub.add_parser("export-tdb", help="write a dataset as TDB NeuronRecord JSON files")
    export.add_argument("src", help="store spec holding the dataset")
    export.add_argument("dst", help="store spec to write TDB files to")
    export.add_argument("--prefix", default="", help="the dataset's prefix in SRC")
    export.add_argument("--dst-prefix", default="", help="where to write in DST")
    export.add_argument("--quiet", action="store_true")
    export.set_defaults(func=_cmd_export_tdb)
    return datasets
