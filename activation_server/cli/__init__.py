"""The ``mechscope`` command line. Subcommands:

  mechscope run "PROMPT" [--model organism|gpt2|DIR] [--top-k 10]   top next-token predictions
  mechscope datasets build|push|pull|ls|export-tdb ...              top-activating example datasets
  mechscope serve [--model ...] [--sae ...] [--datasets ...] [--port 8000]  the REST API and the viewer
"""

from __future__ import annotations

import argparse
import sys

import torch


def _cmd_run(args: argparse.Namespace) -> int:
    from mechscope.inference import gpt2_tokenizer, load_model

    from mechscope.inference.devices import placement_from_args
    place = placement_from_args(args)
    model = load_model(args.model, device=place.torch_device, dtype=place.torch_dtype)
    tok = gpt2_tokenizer()
    tokens, _ = tok.to_tokens(args.prompt, prepend_bos=args.prepend_bos)
    with torch.no_grad():
        logits = model(tokens)[0, -1].float().cpu()
    probs = logits.softmax(-1)
    top = probs.topk(args.top_k)
    print(f"model: {model.cfg.name} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model})")
    print(f"prompt: {args.prompt!r} ({tokens.shape[1]} tokens)")
    print(f"{'rank':>4}  {'token':<20} {'id':>6}  {'prob':>7}  {'logit':>8}")
    for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        print(f"{rank:>4}  {tok.token_str(i)!r:<20} {i:>6}  {p:>7.2%}  {logits[i].item():>8.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mechscope", description="A circuit debugger for GPT-2-family models.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="print the top next-token predictions for a prompt")
    run.add_argument("prompt")
    run.add_argument("--model", default="organism", help="organism (default), a hub name such as gpt2, or a directory")
    run.add_argument("--top-k", type=int, default=10)
    run.add_argument("--no-prepend-bos", dest="prepend_bos", action="store_false",
                     help="do not start the prompt with <|endoftext|> (by default it does, as in training)")
    from mechscope.inference.devices import add_device_arguments
    add_device_arguments(run)
    run.set_defaults(func=_cmd_run)
    from .datasets import add_datasets_subcommands
    add_datasets_subcommands(sub)
    from .explain import add_explain_subcommand
    add_explain_subcommand(sub)
    from .serve import add_serve_subcommand
    add_serve_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mechscope.inference.errors import MechscopeError
    try:
        return args.func(args)
    except MechscopeError as e:
        print(f"mechscope: error: {e}", file=sys.stderr)
        return 2
