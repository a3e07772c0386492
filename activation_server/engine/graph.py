"""Attribution graph: the top nodes for the loss and the weighted edges between them.

1. A loss pass (the node table's tensors) ranks nodes by |estimated total effect|; a head's node is
   the head at one query position (summed over keys), an embedding node the token + position
   embedding at one position.
2. One batched pass with one row per chosen node, LayerNorm scales and attention patterns frozen
   (so the model is linear in each node's contribution along every path), differentiates each row's
   node — a neuron's or latent's pre-activation, a head's output projected on the loss gradient —
   with respect to every upstream node: edge weight = upstream activation × that gradient, times
   ∂loss/∂(pre-activation) of the downstream node.
3. Edges into the loss are direct effects. The strongest edges are kept, then the nodes they touch.
"""

from __future__ import annotations

import dataclasses

import torch

from mechscope.inference import gpt2_tokenizer
from mechscope.inference.hooks import HookContext

from .shared_passes import node_tensors
from .top_k import row_top_k
from ..schemas import (AttributionRequest, GraphEdge, GraphNode, GraphRequest, GraphResult, PromptSpec)


@dataclasses.dataclass(frozen=True)
class _Node:
    kind: str
    layer: int          # -1 for embeddings
    index: int
    position: int
    sae: str | None
    total: float
    direct: float

    @property
    def id(self) -> str:
        sae = f":{self.sae}" if self.sae else ""
        return f"{self.kind}:L{self.layer}:{self.index}@{self.position}{sae}"

    def label(self, tokens: list[str]) -> str:
        tok = tokens[self.position]
        if self.kind == "embedding":
            return f"emb {tok!r}"
        if self.kind == "attn_head":
            return f"L{self.layer}.H{self.index} @{tok!r}"
        if self.kind == "mlp_neuron":
            return f"L{self.layer}.N{self.index} @{tok!r}"
        if self.kind == "sae_error":
            return f"L{self.layer} error @{tok!r}"
        return f"L{self.layer}.F{self.index} @{tok!r}"


def _candidates(t) -> list[_Node]:
    n = t.prepared.lengths[0]
    out: list[_Node] = []
    emb = {}
    for b in t.groups:
        te, de = b.values["total_effect"][0], b.values["direct_effect"][0]
        if b.kind in ("embedding", "pos_embedding"):
            for p in range(n):
                tot, dr = emb.get(p, (0.0, 0.0))
                emb[p] = (tot + float(te[p]), dr + float(de[p]))
        elif b.kind == "attn_head":
            tot, dr = torch.nan_to_num(te).sum(-1), torch.nan_to_num(de).sum(-1)  # [H, Q]
            for h in range(tot.shape[0]):
                for q in range(n):
                    out.append(_Node("attn_head", b.layer, h, q, None, float(tot[h, q]), float(dr[h, q])))
        elif b.kind == "sae_error":
            for p in range(n):
                out.append(_Node("sae_error", b.layer, 0, p, b.sae, float(te[p]), float(de[p])))
        else:
            flat = torch.nan_to_num(te[:n]).abs().reshape(-1)
            for f in row_top_k(flat[None], 64).indices[0].tolist():     # ties: lower index first, every time
                p, i = divmod(f, te.shape[1])
                out.append(_Node(b.kind, b.layer, i, p, b.sae, float(te[p, i]), float(de[p, i])))
    out += [_Node("embedding", -1, 0, p, None, tot, dr) for p, (tot, dr) in emb.items()]
    return out


def attribution_graph(engine, request: GraphRequest) -> GraphResult:
    model = engine.model
    table = AttributionRequest(prompts=[PromptSpec(text=request.prompt, prepend_bos=request.prepend_bos)],
                               loss=request.loss, mlp=request.mlp, attention=request.attention, top_k=1,
                               total_effect_ln="frozen")   # the graph's convention (issue 23 left it as it was)
    t = node_tensors(engine, table)
    tokens = gpt2_tokenizer().token_strs(t.prepared.token_ids[0])
    nodes = sorted(_candidates(t), key=lambda x: -abs(x.total))[:request.max_nodes]
    edges = _edges(engine, t, nodes, request)
    loss_id = "loss"
    edges += [GraphEdge(source=x.id, target=loss_id, weight=x.direct) for x in nodes if x.direct != 0.0]
    edges = sorted(edges, key=lambda e: -abs(e.weight))[:request.max_edges]
    used = {e.source for e in edges} | {e.target for e in edges}
    graph_nodes = [GraphNode(id=x.id, kind=x.kind, layer=x.layer, index=x.index, position=x.position, sae=x.sae,
                             label=x.label(tokens), total_effect=x.total) for x in nodes if x.id in used]
    graph_nodes.append(GraphNode(id=loss_id, kind="loss", layer=model.cfg.n_layers, index=0,
                                 position=t.loss_positions[0], label="loss", total_effect=float(t.scalars[0])))
    return GraphResult(loss=float(t.scalars[0]), tokens=tokens, nodes=graph_nodes, edges=edges)


def _edges(engine, t, nodes: list[_Node], request: GraphRequest) -> list[GraphEdge]:
    """One row per downstream node; see the module docstring."""
    model = engine.model
    downstream = [x for x in nodes if x.kind in ("mlp_neuron", "sae_latent", "attn_head")]
    if not downstream:
        return []
    k = len(downstream)
    tokens = t.prepared.tokens.expand(k, -1)
    store: dict[str, torch.Tensor] = {}
    sae_points = sorted({x.sae for x in nodes if x.sae})

    def keep(x: torch.Tensor, ctx: HookContext):
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
            store[ctx.name] = x
            return x
        store[ctx.name] = x
        return None

    def freeze(x, ctx):
        return x.detach()

    n = model.cfg.n_layers
    hooks = [(f"blocks.{l}.{ln}.hook_scale", freeze) for l in range(n) for ln in ("ln1", "ln2")]
    hooks += [("ln_final.hook_scale", freeze)]
    hooks += [(f"blocks.{l}.attn.hook_pattern", freeze) for l in range(n)]
    names = {"hook_embed", "hook_pos_embed"} | {f"blocks.{l}.attn.hook_z" for l in range(n)}
    names |= {f"blocks.{l}.mlp.hook_pre" for l in range(n)} | {f"blocks.{l}.mlp.hook_post" for l in range(n)}
    for p in sae_points:
        names |= {f"{p}.hook_sae_acts_pre", f"{p}.hook_sae_acts_post", f"{p}.hook_sae_error"}
    hooks += [(name, keep) for name in sorted(names)]
    # gradient of the loss at each head's output, for heads as downstream nodes
    loss_grad_at_attn_out = _loss_grad_at(engine, t, request, sae_points)
    with torch.enable_grad():
        # the scalars are read inside the blocks: no final LayerNorm, no unembedding of k x n x vocab logits
        model(tokens, fwd_hooks=hooks, splices=engine.splices(sae_points), stop_at_layer=n)
        scalars = []
        for r, v in enumerate(downstream):
            if v.kind == "mlp_neuron":
                scalars.append(store[f"blocks.{v.layer}.mlp.hook_pre"][r, v.position, v.index])
            elif v.kind == "sae_latent":
                scalars.append(store[f"{v.sae}.hook_sae_acts_pre"][r, v.position, v.index])
            else:
                z = store[f"blocks.{v.layer}.attn.hook_z"][r, v.position, v.index]          # [d_head]
                W_O = model.h[v.layer].attn.W_O[v.index]                                     # [d_head, d]
                scalars.append((z @ W_O) @ loss_grad_at_attn_out[v.layer][v.position])
        tensors = list(store.values())
        grads = dict(zip(store.keys(), torch.autograd.grad(torch.stack(scalars).sum(), tensors, allow_unused=True)))
    acts = {name: x.detach() for name, x in store.items()}
    pre_grad = _loss_grad_at_pre(engine, t, downstream, request, sae_points)
    edges = []
    for r, v in enumerate(downstream):
        for u in nodes:
            if u.id == v.id or u.layer > v.layer or (u.layer == v.layer and not _before(u, v)):
                continue
            if u.position > v.position:
                continue
            w = _effect(acts, grads, u, r)
            if w is None or w == 0.0:
                continue
            edges.append(GraphEdge(source=u.id, target=v.id, weight=w * pre_grad[r]))
    return edges


def _before(u: _Node, v: _Node) -> bool:
    """Within one layer, attention comes before the MLP."""
    attn = ("attn_head",)
    return u.kind in attn and v.kind not in attn and not (v.sae or "").endswith("hook_attn_out")


def _effect(acts, grads, u: _Node, r: int) -> float | None:
    def g(name):
        x = grads.get(name)
        return None if x is None else x[r]
    if u.kind == "embedding":
        ge, gp = g("hook_embed"), g("hook_pos_embed")
        if ge is None:
            return None
        return float(acts["hook_embed"][r, u.position] @ ge[u.position] + acts["hook_pos_embed"][r, u.position] @ gp[u.position])
    if u.kind == "attn_head":
        name = f"blocks.{u.layer}.attn.hook_z"
        gz = g(name)
        return None if gz is None else float(acts[name][r, u.position, u.index] @ gz[u.position, u.index])
    if u.kind == "mlp_neuron":
        name = f"blocks.{u.layer}.mlp.hook_post"
        gp = g(name)
        return None if gp is None else float(acts[name][r, u.position, u.index] * gp[u.position, u.index])
    if u.kind == "sae_latent":
        name = f"{u.sae}.hook_sae_acts_post"
        gp = g(name)
        return None if gp is None else float(acts[name][r, u.position, u.index] * gp[u.position, u.index])
    name = f"{u.sae}.hook_sae_error"
    gp = g(name)
    return None if gp is None else float(acts[name][r, u.position] @ gp[u.position])


def _loss_pass_grads(engine, t, request, sae_points, names):
    model = engine.model
    store = {}

    def keep(x, ctx):
        store[ctx.name] = x
        return None

    def leaf(x, ctx):
        return x.detach().requires_grad_(True)
    with torch.enable_grad():
        final = model(t.prepared.tokens, fwd_hooks=[("hook_embed", leaf), ("ln_final.hook_scale", lambda x, c: x.detach()),
                                                     *[(nm, keep) for nm in names]],
                      splices=engine.splices(sae_points), logit_positions=torch.tensor(t.loss_positions),
                      return_final=True)
        s = t.objective.scalar({}, t.objective.read_logits(model, final)).sum()
        grads = torch.autograd.grad(s, [store[nm] for nm in names], allow_unused=True)
    return {nm: (gr[0] if gr is not None else torch.zeros_like(store[nm][0])) for nm, gr in zip(names, grads)}


def _loss_grad_at(engine, t, request, sae_points) -> dict[int, torch.Tensor]:
    n = engine.model.cfg.n_layers
    names = [f"blocks.{l}.hook_attn_out" for l in range(n)]
    g = _loss_pass_grads(engine, t, request, sae_points, names)
    return {l: g[f"blocks.{l}.hook_attn_out"] for l in range(n)}


def _loss_grad_at_pre(engine, t, downstream, request, sae_points) -> list[float]:
    """∂loss/∂(pre-activation) of each downstream neuron / latent (1 for heads: their scalar already
    carries the loss gradient)."""
    names = sorted({f"blocks.{v.layer}.mlp.hook_pre" if v.kind == "mlp_neuron" else f"{v.sae}.hook_sae_acts_pre"
                    for v in downstream if v.kind != "attn_head"})
    g = _loss_pass_grads(engine, t, request, sae_points, names) if names else {}
    out = []
    for v in downstream:
        if v.kind == "mlp_neuron":
            out.append(float(g[f"blocks.{v.layer}.mlp.hook_pre"][v.position, v.index]))
        elif v.kind == "sae_latent":
            out.append(float(g[f"{v.sae}.hook_sae_acts_pre"][v.position, v.index]))
        else:
            out.append(1.0)
    return out
