"""Memory planning: lifetimes over the dataflow, one reused activation arena, persistent pools.

:func:`plan_function` gives every value of a function a device address:

* **weights** (``Constant`` nodes, by weight name) and **kv** (named KV-cache
  buffers) are persistent pools in HBM, laid out back to back;
* **activations** (function parameters and ``Call`` results) share one
  arena in DDR whose slots are reused once a value is dead
  (:func:`plan_buffers`, greedy by size, best fit);
* **views** (``reshape`` by default) take no space: they alias the storage
  of their input, whose lifetime grows to cover the view's uses.

Sizes are worst cases: ``sym.upper_bound`` of each tensor's byte size, so one
plan serves every dynamic size within the declared bounds, and a tensor of
any actual size lies inside its slot. :func:`check_plan` proves a plan safe
on a target. See doc/memory.md.
"""
from __future__ import annotations

from dlavm import sym
from dlavm.ir import Call, Constant, Function, GetItem, Literal, Tuple, TupleType, Var, post_order
from dlavm.target.schema import ADDRESS_UNIT

from .memory_arena import Buffer, PlanError, align_up, plan_buffers
from .memory_check import POOL_REGIONS, MemoryPlan, PoolPlan, check_plan

#: Ops whose result is, by default, the same bytes as their single input.
VIEW_OPS = frozenset({"reshape"})


def default_is_view(node) -> bool:
    """``reshape``: a contiguous tensor read with another shape (same bytes, same order)."""
    return isinstance(node, Call) and node.op.name in VIEW_OPS


def worst_case_bytes(node, size_of=None, alignment: int = 1) -> int:
    """Upper bound of the node's byte size over every in-bounds dynamic size.

    ``size_of(node)`` (an int or ``sym.Expr``) overrides the type's size (e.g.
    a device layout with padded rows). A tuple-typed value (a multi-output
    op) is its fields back to back, each rounded up to ``alignment``. Raises
    :class:`PlanError` naming the node when the size has no upper bound.
    """
    if size_of is not None:
        expr = size_of(node)
    elif isinstance(node.type, TupleType):
        return sum(align_up(worst_case_bytes_of_type(f), alignment) for f in node.type.fields)
    else:
        expr = node.type.nbytes()
    expr = sym.as_expr(expr) if not isinstance(expr, int) else sym.const(expr)
    try:
        return sym.upper_bound(expr)
    except ValueError:
        raise PlanError(f"cannot plan memory for {_label(node)} of type {node.type}: its size {expr} has "
                        "no upper bound (give every dynamic dim a maximum, e.g. torch.export.Dim(max=...))"
                        ) from None


def _label(node) -> str:
    if isinstance(node, (Var, Constant)):
        return f"%{node.name}" if isinstance(node, Var) else f"@{node.name}"
    origin = node.span.origin if getattr(node, "span", None) else ""
    what = node.op.name if isinstance(node, Call) else type(node).__name__
    return f"{what} ({origin})" if origin else what


def plan_function(fn: Function, target, weights: dict[str, int] | None = None,
                  kv: dict[str, int] | None = None, is_view=None, size_of=None,
                  alignment: int = 32, place_constants: bool = True) -> MemoryPlan:
    """Plan every buffer of ``fn`` on ``target`` and check the result.

    Steps are positions in ``post_order(fn.body)`` (a topological order). A
    value is live from the step that defines it (parameters: step 0) to its
    last use; the function's outputs to the last step. A view (``is_view``,
    default :func:`default_is_view`) aliases its first input and extends that
    storage's lifetime; a ``GetItem`` of a tuple aliases the field. Weights
    are sized by ``weights[name]`` (packed bytes) when given, else by type;
    every name in ``weights`` and ``kv`` gets a slot even if ``fn`` does not
    use it. With ``place_constants=False`` the graph's ``Constant`` nodes get
    no slot (a device program addresses only the packed blobs in ``weights``,
    never a float master weight). Offsets are multiples of ``max(alignment, target.mem_align_bytes)``.

    Guarantees: the returned plan passes :func:`check_plan` (it is run here);
    planning is deterministic and iterative (no recursion).
    """
    is_view = is_view or default_is_view
    align = max(alignment, target.mem_align_bytes, ADDRESS_UNIT)
    order = post_order(fn.body)
    last = max(len(order) - 1, 0)
    step = {node: i for i, node in enumerate(order)}

    # Storage root of every value (itself, or what it is a view of), and lifetimes of roots.
    root: dict = {}
    view_offset: dict = {}
    start: dict = {}
    end: dict = {}
    weight_nodes: dict = {}
    tuples: set = set()

    def use(node, at: int) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            if n in tuples:  # a tuple is its fields: using it uses each field
                stack.extend(n.fields)
                continue
            r = root.get(n)
            if r is not None and end[r] < at:
                end[r] = at

    for p in fn.params:
        root[p], start[p], end[p] = p, 0, 0
    for i, node in enumerate(order):
        if isinstance(node, Constant):
            if place_constants:
                weight_nodes.setdefault(node.name, node)
                root[node] = node.name
                end[node.name] = last
            continue
        if isinstance(node, (Literal, Var)):
            continue
        if isinstance(node, Tuple):
            tuples.add(node)
            use(node, i)
            continue
        if isinstance(node, GetItem) and node.value in tuples:
            field = node.value.fields[node.index]
            if field in root:
                root[node] = root[field]
                view_offset[node] = view_offset.get(field, 0)
            continue
        if isinstance(node, GetItem):
            # Field of a multi-output op: a slice of its storage at the fields' packed offset.
            base = node.value
            use(base, i)
            if base not in root:
                continue
            root[node] = root[base]
            off = view_offset.get(base, 0)
            for f in base.type.fields[:node.index]:
                off += align_up(worst_case_bytes_of_type(f), align)
            view_offset[node] = off
            continue
        for a in node.inputs():
            use(a, i)
        if is_view(node) and node.args and node.args[0] in root:
            src = node.args[0]
            root[node] = root[src]
            view_offset[node] = view_offset.get(src, 0)
            continue
        root[node], start[node], end[node] = node, i, i
    for out in node_fields(fn.body):  # outputs live to the end
        use(out, last)

    plan = MemoryPlan()
    hbm, ddr = target.figures.region("hbm"), target.figures.region("ddr")

    # Persistent pools: weights, then KV cache, back to back from the HBM base.
    cursor = hbm.base
    weights = dict(weights or {})
    names = list(weight_nodes) + [n for n in weights if n not in weight_nodes]
    for pool, items in (("weights", [(n, weights[n] if n in weights else worst_case_bytes(weight_nodes[n], size_of))
                                     for n in names]),
                        ("kv", list((kv or {}).items()))):
        off = 0
        for name, size in items:
            if size < 0:
                raise PlanError(f"{pool} buffer {name!r} has negative size {size}")
            plan.offsets[name], plan.pool_of[name] = off, pool
            plan.buffers[name] = Buffer(name, int(size), 0, last)
            off += align_up(int(size), align)
        plan.pools[pool] = PoolPlan(cursor, off, POOL_REGIONS[pool])
        cursor += off

    # Activation arena: every root that is a graph value.
    acts = [n for n in root if root[n] is n]
    bufs = [Buffer(f"{_label(n)}@{start[n]}", worst_case_bytes(n, size_of, align), start[n], end[n])
            for n in acts]
    offsets, arena = plan_buffers(bufs, align)
    plan.pools["activations"] = PoolPlan(ddr.base, arena, POOL_REGIONS["activations"])
    for n, b in zip(acts, bufs):
        plan.offsets[n], plan.pool_of[n], plan.buffers[n] = offsets[b.name], "activations", b

    # Views: same pool, the root's offset plus their own, their own size and lifetime.
    for n, r in root.items():
        if r is n or isinstance(n, Constant):
            continue
        plan.aliases[n] = r
        plan.pool_of[n] = plan.pool_of[r]
        plan.offsets[n] = plan.offsets[r] + view_offset.get(n, 0)
        rb = plan.buffers[r]
        plan.buffers[n] = Buffer(f"{_label(n)}@{step[n]} (view of {rb.name})",
                                 worst_case_bytes(n, size_of, align), max(step[n], rb.start), rb.end)
    check_plan(plan, target)
    return plan


def worst_case_bytes_of_type(t) -> int:
    """Upper bound of a tensor type's byte size (see :func:`worst_case_bytes`)."""
    try:
        return sym.upper_bound(t.nbytes())
    except ValueError:
        raise PlanError(f"cannot plan memory for a value of type {t}: its size has no upper bound") from None


def node_fields(node) -> list:
    """The values a function returns: the fields of a returned tuple (recursively), else the node."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Tuple):
            stack.extend(reversed(n.fields))
        else:
            out.append(n)
    return out


__all__ = ["Buffer", "MemoryPlan", "PlanError", "PoolPlan", "VIEW_OPS", "check_plan", "default_is_view",
           "plan_buffers", "plan_function", "worst_case_bytes"]
