"""``mechscope explain``: explain and score every node of a node dataset (offline by default).

  mechscope explain [--dataset STORE] [--prefix NAME] [--explainer offline|llm] [--nodes KEY ...]
                    [--workers N] [--no-resume] [--summary] [--export-tdb DST [--dst-prefix P]] [--quiet]

STORE is a store spec holding the dataset (default: the organism's, data/datasets/organism). KEY is
``kind:layer:index`` or ``sae_latent:<hook point>:index``. Explanations are written beside the
dataset (resumable: finished groups are skipped, so a rerun after a finished run is instant). The LLM
explainer reads MECHSCOPE_LLM_BASE_URL, MECHSCOPE_LLM_MODEL and MECHSCOPE_LLM_API_KEY.
"""

from __future__ import annotations

import argparse
import math

DEFAULT_DATASET = "data/datasets/organism"


def _cmd_explain(args: argparse.Namespace) -> int:
    from mechscope.datasets.explanations import (ExplanationStore, NodeKey, explain_dataset, export_tdb_explanations,
                                                 make_explainer)
    from mechscope.datasets.node_dataset import NodeDataset
    from mechscope.datasets.stores import open_store
    dataset = NodeDataset(open_store(args.dataset), args.prefix or "")
    store = ExplanationStore(dataset.store, dataset.prefix)
    nodes = [NodeKey.parse(n) for n in args.nodes] if args.nodes else None
    explainer, simulator = make_explainer(args.explainer)
    report = explain_dataset(dataset, explainer, simulator, store=store, nodes=nodes, resume=not args.no_resume,
                             workers=args.workers, progress=not args.quiet)
    print(f"{args.explainer}: explained {report.nodes_done} nodes in {report.seconds:.1f} s"
          f" ({report.nodes_skipped} already done) in {dataset.description}")
    if args.summary:
        print_summary(store)
    if args.export_tdb:
        n = export_tdb_explanations(store, open_store(args.export_tdb), args.dst_prefix or "", progress=not args.quiet)
        print(f"wrote {n} TDB explanation files to {args.export_tdb}")
    return 0


def print_summary(store) -> None:  # type: ignore[no-untyped-def]
    from mechscope.datasets.explanations.summary import ranked, summarize, text_histogram
    entries = [(k, e) for k, e in store.iter_ours() if e.explainer == "offline"] or list(store.iter_ours())
    for kind, s in summarize(entries).items():
        print(f"{kind:>11}: {s['nodes']} nodes, mean score {s['mean_score']:.3f} (median {s['median_score']:.3f}); "
              f"baselines: random {s['mean_random']:.3f}, empty {s['mean_empty']:.3f}; "
              f"detection {s['mean_detection']:.3f}" if not math.isnan(s["mean_detection"]) else "")
    latents = [(k, e) for k, e in entries if k.kind == "sae_latent"]
    if latents:
        print("SAE latents, simulation score:")
        print(text_histogram([e.score for _, e in latents if e.score is not None]))
        best, worst = ranked(latents)
        for title, rows in (("best", best), ("worst", worst)):
            print(f"{title} 10:")
            for score, key, text in rows:
                print(f"  {score:+.3f}  {key}  {text[:110]}")


def add_explain_subcommand(subparsers) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
    p = subparsers.add_parser("explain", help="explain and score every node of a node dataset",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET, help=f"store spec of the dataset (default {DEFAULT_DATASET})")
    p.add_argument("--prefix", default="", help="the dataset's prefix inside the store")
    p.add_argument("--explainer", default="offline", choices=["offline", "llm"])
    p.add_argument("--nodes", nargs="+", metavar="KEY", help="only these nodes (kind:layer:index); always redone")
    p.add_argument("--workers", type=int, default=1, help="nodes in flight at once (useful with --explainer llm)")
    p.add_argument("--no-resume", action="store_true", help="redo groups that are already explained")
    p.add_argument("--summary", action="store_true", help="print scores per kind, a histogram, best and worst")
    p.add_argument("--export-tdb", metavar="DST", help="also write TDB explanation files to this store spec")
    p.add_argument("--dst-prefix", default="", help="where to write in DST")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_explain)
    return p
