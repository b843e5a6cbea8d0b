"""The memory plan as data, and the checker that proves it safe on a target.

:func:`check_plan` is independent of how the plan was made (it trusts no
planner): it re-derives every absolute byte range from the plan's pools,
offsets and sizes and checks them against the target's address map.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from dlavm.ir import Constant
from dlavm.target.schema import ADDRESS_UNIT

from .memory_arena import PlanError

#: Where each pool is placed by default (doc/memory.md).
POOL_REGIONS = {"weights": "hbm", "kv": "hbm", "activations": "ddr"}


@dataclass(frozen=True)
class PoolPlan:
    """One pool: ``size`` bytes at absolute device address ``base`` in ``region`` ('hbm'|'ddr'|'sram')."""

    base: int
    size: int
    region: str


@dataclass
class MemoryPlan:
    """Where every buffer of a function lives on the device.

    ``offsets[key]`` is the byte offset within pool ``pool_of[key]``;
    ``buffers[key]`` its worst-case size and live range. Keys are IR nodes
    (activations) or names (weights by weight name, KV-cache buffers).
    ``aliases`` maps a view's key to the key whose storage it shares (its
    offset and pool are filled in too); views take no space of their own.
    """

    offsets: dict = field(default_factory=dict)
    pools: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    pool_of: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)

    def _key(self, key):
        if key in self.offsets:
            return key
        if isinstance(key, Constant) and key.name in self.offsets:  # weights are planned by name
            return key.name
        raise KeyError(f"no buffer {key!r} in this memory plan")

    def address(self, key) -> int:
        """Absolute device address of ``key`` (an IR node, or a weight / KV buffer name)."""
        k = self._key(key)
        return self.pools[self.pool_of[k]].base + self.offsets[k]

    def pool_bytes(self, pool: str) -> int:
        """Size of ``pool`` in bytes (0 when the plan has no such pool)."""
        p = self.pools.get(pool)
        return p.size if p else 0


def _span(plan: MemoryPlan, key) -> tuple[int, int]:
    a = plan.pools[plan.pool_of[key]].base + plan.offsets[key]
    return a, a + plan.buffers[key].size


def _describe(plan: MemoryPlan, key) -> str:
    b = plan.buffers[key]
    a, e = _span(plan, key)
    return f"{b.name!r} [{a:#x}, {e:#x}) live {b.start}..{b.end}"


def check_plan(plan: MemoryPlan, target) -> None:
    """Raise :class:`PlanError` unless the plan is safe on ``target``.

    Proves, for every key: its pool exists; its address is a multiple of the
    device address unit (32 bytes); ``[address, address + size)`` lies inside
    its pool, and every pool inside its region of ``target``; pools sharing
    a region do not overlap; a view lies inside the storage it aliases and is
    live only while that storage is. And for every pool: no two buffers live
    at a common step have overlapping byte ranges. The message names the two
    buffers (or the buffer and the region) with absolute addresses.
    """
    figs = target.figures
    regions = {r.name: r for r in figs.regions}
    for pname, pool in plan.pools.items():
        r = regions.get(pool.region)
        if r is None:
            raise PlanError(f"pool {pname!r} is placed in unknown region {pool.region!r}; "
                            f"target {target.name!r} has {sorted(regions)}")
        if pool.size < 0 or not r.contains(pool.base, pool.size):
            raise PlanError(f"pool {pname!r} [{pool.base:#x}, {pool.base + pool.size:#x}) does not fit "
                            f"region {r.name} [{r.base:#x}, {r.end:#x}) of target {target.name!r}")
    by_region: dict = {}
    for pname, pool in plan.pools.items():
        by_region.setdefault(pool.region, []).append((pool.base, pool.base + pool.size, pname))
    for spans in by_region.values():
        spans = sorted(s for s in spans if s[1] > s[0])
        for (a0, e0, n0), (a1, e1, n1) in zip(spans, spans[1:]):
            if a1 < e0:
                raise PlanError(f"pools {n0!r} [{a0:#x}, {e0:#x}) and {n1!r} [{a1:#x}, {e1:#x}) overlap")

    per_pool: dict = {}
    for key, off in plan.offsets.items():
        if key not in plan.buffers or key not in plan.pool_of:
            raise PlanError(f"buffer {key!r} has an offset but no size or pool")
        pname = plan.pool_of[key]
        if pname not in plan.pools:
            raise PlanError(f"buffer {plan.buffers[key].name!r} is in pool {pname!r}, which the plan lacks")
        pool = plan.pools[pname]
        b = plan.buffers[key]
        a, e = _span(plan, key)
        if a % ADDRESS_UNIT:
            raise PlanError(f"buffer {_describe(plan, key)} is not {ADDRESS_UNIT}-byte aligned")
        if off < 0 or off + b.size > pool.size:
            raise PlanError(f"buffer {_describe(plan, key)} lies outside pool {pname!r} "
                            f"[{pool.base:#x}, {pool.base + pool.size:#x}) in region {pool.region}")
        if key in plan.aliases:
            root = plan.aliases[key]
            if root not in plan.offsets or plan.pool_of[root] != pname:
                raise PlanError(f"view {b.name!r} aliases {root!r}, which is not planned in pool {pname!r}")
            ra, re = _span(plan, root)
            rb = plan.buffers[root]
            if a < ra or e > re or b.start < rb.start or b.end > rb.end:
                raise PlanError(f"view {_describe(plan, key)} is not inside the storage it aliases, "
                                f"{_describe(plan, root)}")
            continue
        if b.size:
            per_pool.setdefault(pname, []).append(key)

    for keys in per_pool.values():
        _check_disjoint(plan, keys)


def _check_disjoint(plan: MemoryPlan, keys: list) -> None:
    """Sweep over steps; the live set is kept sorted by address, so one neighbour test per insertion suffices."""
    events = []
    for i, k in enumerate(keys):
        b = plan.buffers[k]
        events.append((b.start, 1, i))
        events.append((b.end + 1, 0, i))  # freed after its last step: removals sort before insertions
    events.sort()
    live_lo: list = []   # sorted start addresses of live buffers
    live_key: list = []
    for _, kind, i in events:
        k = keys[i]
        a, e = _span(plan, k)
        if kind == 0:
            j = bisect.bisect_left(live_lo, a)
            while live_key[j] is not k:
                j += 1
            del live_lo[j], live_key[j]
            continue
        j = bisect.bisect_left(live_lo, a)
        for n in (j - 1, j):
            if 0 <= n < len(live_key):
                na, ne = _span(plan, live_key[n])
                if na < e and a < ne:
                    raise PlanError(f"live buffers overlap: {_describe(plan, live_key[n])} and "
                                    f"{_describe(plan, k)}")
        live_lo.insert(j, a)
        live_key.insert(j, k)


__all__ = ["MemoryPlan", "POOL_REGIONS", "PoolPlan", "check_plan"]
