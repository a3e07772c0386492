"""Exact merge of partial node-dataset builds (shards of a corpus's batches built apart).

A :class:`PartialBuild` is the state of a build over some batches: every group's
:class:`~.state.GroupState`, the shared random sample, the batches covered, and each
group's power sums as tree blocks (:mod:`.tree_sum`). :meth:`PartialBuild.merge` of two
partial builds over disjoint batches is associative, commutative and deterministic:

* top examples, quantile samples, random sample: the union's best entries under the same total
  order the sequential build uses (value, then lower row; priority, then lower row), so the kept
  sets are those of one sequential build; slots are written in that canonical order;
* counts, histograms and the count of positive tokens: integer sums; min and max: exact;
* power sums: tree blocks joined bottom-up, so the bits do not depend on the merge order;
* calibration (histogram range, moment shift, quantile boundaries, sparse path), fixed from the
  corpus's first batch before the shards start: must be equal in both, else :class:`ShardMismatchError`.

Once the partial build covers every batch, :meth:`PartialBuild.finished` gives states whose
finalised dataset is byte-identical to a one-process build's (the builder writes entries in
canonical order, see ``GroupState.ordered``). Shards are serialised with safetensors (no pickle).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mechscope.inference.errors import InvalidInputError

from .sampling import SharedSample, slot_order
from .state import GroupState
from .tree_sum import Blocks, blocks_of, blocks_to_levels, merge_blocks

CALIBRATION_KEYS = ("calibrated", "sparse", "shift", "q_bounds", "hist_lo", "hist_width")
"""GroupState tensors fixed by the first batch; every shard of one build must share them."""
_SUM_KEYS = ("sums", "sums_block")
_SHARED = "_shared"


class ShardMismatchError(InvalidInputError):
    """Two partial builds cannot be merged: overlapping batches or different calibrations."""


Calibration = dict[str, dict[str, torch.Tensor]]


def calibration_of(states: dict[str, GroupState]) -> Calibration:
    return {name: {k: state.t[k].clone() for k in CALIBRATION_KEYS} for name, state in states.items()}


def apply_calibration(states: dict[str, GroupState], calibration: Calibration) -> None:
    """Fix fresh states' calibration (so their first batch does not calibrate them again)."""
    for name, state in states.items():
        if name not in calibration:
            raise ShardMismatchError(f"the calibration has no group {name!r}", field="calibration")
        for key in CALIBRATION_KEYS:
            state.t[key] = calibration[name][key].clone()


def calibration_to_bytes(calibration: Calibration) -> bytes:
    return st_save({f"{name}/{k}": v.contiguous() for name, group in calibration.items() for k, v in group.items()})


def calibration_from_bytes(data: bytes) -> Calibration:
    out: Calibration = {}
    for key, value in st_load(data).items():
        name, k = key.split("/", 1)
        out.setdefault(name, {})[k] = value
    return out


def _coalesce(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if out and start < out[-1][1]:
            raise ShardMismatchError(f"batches {start}..{stop - 1} were merged twice (they overlap "
                                     f"{out[-1][0]}..{out[-1][1] - 1})", field="batches")
        if out and start == out[-1][1]:
            out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return tuple(out)


@dataclass
class PartialBuild:
    groups: dict[str, GroupState]
    shared: SharedSample
    batches: tuple[tuple[int, int], ...]
    """Sorted, disjoint ``[start, stop)`` ranges of the batches folded in."""
    sums: dict[str, Blocks]

    @classmethod
    def from_states(cls, groups: dict[str, GroupState], shared: SharedSample, start: int, stop: int) -> "PartialBuild":
        """Wrap states that streamed batches ``start .. stop - 1`` in order."""
        sums = {name: blocks_of(s.t["sums"], s.t["sums_block"]) for name, s in groups.items()}
        return cls(groups, shared, ((start, stop),), sums)

    # ---- merging ---------------------------------------------------------------------------------
    def merge(self, other: "PartialBuild") -> "PartialBuild":
        """The partial build of both (neither is changed)."""
        if set(self.groups) != set(other.groups):
            raise ShardMismatchError(f"partial builds of different groups: {sorted(self.groups)} and "
                                     f"{sorted(other.groups)}", field="groups")
        batches = _coalesce([*self.batches, *other.batches])
        shared_t, rand_pick = _merge_shared(self.shared, other.shared)
        shared = SharedSample(self.shared.cfg, self.shared.n_ctx)
        shared.t = shared_t
        groups = {}
        for name, a in self.groups.items():
            groups[name] = _merge_group(name, a, other.groups[name], rand_pick)
        sums = {name: merge_blocks(self.sums[name], other.sums[name]) for name in self.groups}
        return PartialBuild(groups, shared, batches, sums)

    def finished(self, num_batches: int) -> tuple[dict[str, GroupState], SharedSample]:
        """The states of the whole build, once every batch ``0 .. num_batches - 1`` is in."""
        if self.batches != ((0, num_batches),):
            raise ShardMismatchError(f"the partial build covers batches {list(self.batches)}, not all of "
                                     f"[0, {num_batches})", field="batches")
        for name, state in self.groups.items():
            state.t["sums"], state.t["sums_block"] = blocks_to_levels(self.sums[name], state.t["sums"])
        return self.groups, self.shared

    # ---- serialisation ---------------------------------------------------------------------------
    def to_bytes(self, meta: dict | None = None) -> bytes:
        tensors: dict[str, torch.Tensor] = {}
        for name, state in self.groups.items():
            for k, v in state.t.items():
                if k not in _SUM_KEYS:
                    tensors[f"{name}/{k}"] = v.contiguous()
            for (level, index), value in self.sums[name].items():
                tensors[f"{name}/sum_block/{level}/{index}"] = value.contiguous()
        for k, v in self.shared.t.items():
            tensors[f"{_SHARED}/{k}"] = v.contiguous()
        info = {"batches": [list(r) for r in self.batches], "meta": meta or {}}
        return st_save(tensors, metadata={"partial_build": json.dumps(info, sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes, fresh: Callable[[], tuple[dict[str, GroupState], SharedSample]]
                   ) -> tuple["PartialBuild", dict]:
        """Load a partial build into fresh states from ``fresh()`` (which fix the expected groups and
        shapes); returns it and the metadata it was saved with."""
        info = json.loads(_metadata(data)["partial_build"])
        loaded = st_load(data)
        groups, shared = fresh()
        per: dict[str, dict[str, torch.Tensor]] = {}
        sums: dict[str, Blocks] = {name: {} for name in groups}
        for key, value in loaded.items():
            name, k = key.split("/", 1)
            if k.startswith("sum_block/"):
                _, level, index = k.split("/")
                if name not in sums:
                    raise ShardMismatchError(f"the shard holds an unknown group {name!r}", field="groups")
                sums[name][(int(level), int(index))] = value
            else:
                per.setdefault(name, {})[k] = value
        shared.load_state_dict(per.pop(_SHARED, {}))
        if set(per) != set(groups):
            raise ShardMismatchError(f"the shard holds groups {sorted(per)}, this build has {sorted(groups)}",
                                     field="groups")
        for name, state in groups.items():
            state.load_state_dict({**per[name], **{k: state.t[k] for k in _SUM_KEYS}})
        batches = _coalesce([tuple(r) for r in info["batches"]])
        return cls(groups, shared, batches, sums), info["meta"]


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (its JSON header)."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size].decode()).get("__metadata__", {})


def _merge_shared(a: SharedSample, b: SharedSample) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The merged sample's tensors, and for each of its slots the slot of ``cat(a, b)`` it comes from."""
    r = a.t["rand_row"].shape[0]
    rows = torch.cat([a.t["rand_row"], b.t["rand_row"]])
    prio = torch.cat([a.t["rand_prio"], b.t["rand_prio"]])
    pick = slot_order(rows[None], prio[None], descending=False)[0, :r]
    return {k: torch.cat([a.t[k], b.t[k]])[pick] for k in a.t}, pick


def _merge_group(name: str, a: GroupState, b: GroupState, rand_pick: torch.Tensor) -> GroupState:
    for key in CALIBRATION_KEYS:
        if not torch.equal(a.t[key], b.t[key]):
            raise ShardMismatchError(f"group {name}: the shards were built with different calibrations "
                                     f"({key} differs)", field="calibration")
    ta, tb = a.t, b.t
    t = dict(ta)
    for prefix, key, descending in (("top", "top_val", True), ("q", "q_prio", False)):
        names = [k for k in ta if k.startswith(prefix + "_") and k != "q_bounds"]
        slots = ta[key].shape[1]
        order = slot_order(torch.cat([ta[f"{prefix}_row"], tb[f"{prefix}_row"]], 1),
                           torch.cat([ta[key], tb[key]], 1), descending=descending)[:, :slots]
        arange = torch.arange(order.shape[0])[:, None]
        for k in names:
            t[k] = torch.cat([ta[k], tb[k]], 1)[arange, order]
    for k in ("rand_act", "rand_pair"):
        if k in ta:
            t[k] = torch.cat([ta[k], tb[k]], 1)[:, rand_pick]
    for k in ("count", "n_pos", "hist"):
        t[k] = ta[k] + tb[k]
    t["vmin"] = torch.minimum(ta["vmin"], tb["vmin"])
    t["vmax"] = torch.maximum(ta["vmax"], tb["vmax"])
    t["sums"] = torch.zeros_like(ta["sums"])  # held as tree blocks by the PartialBuild until finished
    t["sums_block"] = torch.full_like(ta["sums_block"], -1)
    out = copy.copy(a)
    out.t = t
    return out
