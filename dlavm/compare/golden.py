"""Golden instruction streams: one reviewed listing per (case, target, dim binding) under ``compare/``.

A golden is :func:`dlavm.compare.listing.render` of a case compiled by the
current compiler and specialised at its dims, with relocated addresses
and a header naming the case, its sizes, target, ISA version and dims.
:func:`check` regenerates each and diffs it against the file;
:func:`update` rewrites the files that differ (``dlavm golden --update``),
so the diff of the golden files is what a reviewer reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cases import CASES, GoldenCase
from .diff import DiffResult, diff_listings
from .listing import Listing, from_manifest, open_source, parse, render

#: The checked-in goldens (repository root / compare).
GOLDEN_ROOT = Path(__file__).resolve().parents[2] / "compare"


def golden_path(case: GoldenCase, at: dict, root: Path | None = None) -> Path:
    """``compare/<target>/<case>.<dim><value>....asm``, e.g. ``compare/tiny/llama_block.seq129.asm``."""
    suffix = ".".join(f"{k}{v}" for k, v in at.items())
    return Path(root or GOLDEN_ROOT) / case.target / f"{case.name}.{suffix}.asm"


def compile_case(case: GoldenCase):
    """The case compiled by the current compiler (shape-only: no weight data)."""
    from dlavm.compiler import compile as dlavm_compile
    return dlavm_compile(case.build(), target=case.target, name=case.name)


def golden_listing(case: GoldenCase, at: dict, cm=None) -> Listing:
    """The listing a golden file holds for ``case`` at ``at`` (``cm``: an already compiled case)."""
    cm = cm or compile_case(case)
    header = {"case": case.name, "config": case.config}
    return from_manifest(cm.manifest, lambda rel: cm.build.files[rel], at, raw=False,
                         source=f"current compiler ({case.key} at {','.join(f'{k}={v}' for k, v in at.items())})",
                         header=header)


@dataclass
class GoldenStatus:
    """One golden: its path, the regenerated text, and how it compares with the file."""

    case: GoldenCase
    at: dict
    path: Path
    text: str
    state: str               # "same", "differs", "missing", "format" (same instructions, other text)
    diff: DiffResult | None = None


def check(cases=CASES, root: Path | None = None, compiled: dict | None = None) -> list:
    """Regenerate every golden of ``cases`` and compare with the files (:class:`GoldenStatus` each).

    ``compiled``: ``{case.key: CompiledModel}`` to reuse compilations.
    """
    out = []
    for case in cases:
        cm = (compiled or {}).get(case.key) or compile_case(case)
        for at in case.at:
            new = golden_listing(case, at, cm)
            text = render(new)
            path = golden_path(case, at, root)
            if not path.exists():
                out.append(GoldenStatus(case, at, path, text, "missing"))
                continue
            old_text = path.read_text()
            if old_text == text:
                out.append(GoldenStatus(case, at, path, text, "same"))
                continue
            old = open_source(path)
            if not isinstance(old, Listing):  # pragma: no cover - a golden path is always a listing
                old = parse(old_text, str(path))
            res = diff_listings(old, new)
            out.append(GoldenStatus(case, at, path, text, "format" if res.same else "differs", res))
    return out


def update(cases=CASES, root: Path | None = None) -> list:
    """Rewrite every golden of ``cases`` whose text changed; returns the :class:`GoldenStatus` list."""
    statuses = check(cases, root)
    for st in statuses:
        if st.state != "same":
            st.path.parent.mkdir(parents=True, exist_ok=True)
            st.path.write_text(st.text)
    return statuses


__all__ = ["GOLDEN_ROOT", "golden_path", "compile_case", "golden_listing", "GoldenStatus", "check", "update"]
