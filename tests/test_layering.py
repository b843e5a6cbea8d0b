"""Layering as an allow-list: every import of ``dlavm`` and ``hw_models`` is checked
against the one import table in doc/architecture.md ("Import rules").

The table maps each package to the packages (and third-party modules) it may
import directly. The checker resolves every form an import can take: ``import
a.b as c``, ``from X import name`` (the module ``X.name`` when there is one),
relative imports, imports inside functions, and ``importlib.import_module`` /
``__import__`` with a literal name (a computed name is refused: it could hide
any edge). Standard-library modules are always allowed; any other module must
be a table row or a third-party name the row lists.
"""
from __future__ import annotations

import ast
import json
import pathlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLE_DOC = ROOT / "doc" / "architecture.md"
TABLE_HEADING = "## Import rules"
#: Top-level packages of this repository; everything under them must belong to a table row.
FIRST_PARTY = ("dlavm", "hw_models", "devproc")
#: The ``dlavm`` row is the package root (``dlavm/__init__.py``) only: its subpackages have rows of their own.
ROOT_ONLY = {"dlavm", "devproc"}


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class ImportTable:
    """package -> what it may import directly (first-party rows and third-party top-level names)."""
    allowed: dict[str, frozenset[str]]

    @property
    def packages(self) -> list[str]:
        return list(self.allowed)

    def row_of(self, module: str) -> str | None:
        """The row a first-party module belongs to: the longest row that is it or a package above it."""
        best = None
        for row in self.allowed:
            covers = module == row or (row not in ROOT_ONLY and module.startswith(row + "."))
            if covers and (best is None or len(row) > len(best)):
                best = row
        return best


def parse_import_table(markdown: str) -> ImportTable:
    """The table under :data:`TABLE_HEADING`: first column the package, second what it may import.

    Names are in backticks; a cell without one (``nothing``) allows nothing. Raises
    ValueError naming the line for a missing table, a row without a package or a repeated row.
    """
    lines = markdown.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == TABLE_HEADING)
    except StopIteration:
        raise ValueError(f"{TABLE_DOC.name}: no '{TABLE_HEADING}' section") from None
    allowed: dict[str, frozenset[str]] = {}
    in_table = False
    for i, line in enumerate(lines[start + 1:], start + 2):
        if line.startswith("## "):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table:   # the header row, then the |---| row
            in_table = True
            if cells[:2] != ["package", "may import"]:
                raise ValueError(f"{TABLE_DOC.name}:{i}: the import table's header must start "
                                 f"'| package | may import |', got {line!r}")
            continue
        if set(cells[0]) <= set("-: "):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        if len(names) != 1:
            raise ValueError(f"{TABLE_DOC.name}:{i}: a row names exactly one package in backticks, got {cells[0]!r}")
        if names[0] in allowed:
            raise ValueError(f"{TABLE_DOC.name}:{i}: package {names[0]} has two rows")
        allowed[names[0]] = frozenset(re.findall(r"`([^`]+)`", cells[1]))
    if not allowed:
        raise ValueError(f"{TABLE_DOC.name}: no table under '{TABLE_HEADING}'")
    return ImportTable(allowed)


def load_table() -> ImportTable:
    return parse_import_table(TABLE_DOC.read_text())


# ---------------------------------------------------------------- resolving imports

def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, root: pathlib.Path = ROOT) -> bool:
    """Whether ``name`` is a first-party module or package (a file under ``root``)."""
    if name.split(".")[0] not in FIRST_PARTY:
        return False
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or base.is_dir()   # a folder imports as a (namespace) package


def _absolute(name: str, level: int, module: str, is_package: bool) -> str:
    """``from <level dots><name>`` inside ``module``, as an absolute name."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ValueError(f"relative import beyond the top-level package in {module}")
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _literal_import_call(node: ast.Call) -> tuple[str | None, bool]:
    """(module name, is a dynamic-import call) for ``importlib.import_module(...)`` / ``__import__(...)``."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name not in ("import_module", "__import__"):
        return None, False
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value, True
    return None, True


def imported_modules(source: str, module: str, is_package: bool, exists=is_module) -> list[tuple[int, str]]:
    """Every (line, module) that ``source`` (the text of ``module``) imports, anywhere in the file.

    ``from X import a`` imports ``X.a`` when that is a module (``exists``), else ``X``.
    A dynamic import whose name is not a string literal yields the module ``<computed>``.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, module, is_package) if node.level else node.module
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                found.append((node.lineno, sub if a.name != "*" and exists(sub) else base))
        elif isinstance(node, ast.Call):
            name, dynamic = _literal_import_call(node)
            if not dynamic:
                continue
            if name is None:
                found.append((node.lineno, "<computed>"))
            elif name.startswith("."):
                package = next((k.value.value for k in node.keywords if k.arg == "package"
                                and isinstance(k.value, ast.Constant)), None)
                package = package if package is not None else (
                    node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else None)
                if package is None:
                    found.append((node.lineno, "<computed>"))
                else:
                    level = len(name) - len(name.lstrip("."))
                    found.append((node.lineno, _absolute(name[level:], level, package, True)))
            else:
                found.append((node.lineno, name))
    return list(dict.fromkeys(found))   # ``from X import a, b`` of one module counts once


# ---------------------------------------------------------------- the check

def check_source(source: str, label: str, module: str, is_package: bool, table: ImportTable,
                 exists=is_module) -> list[str]:
    """One line per import of ``source`` that the table does not allow: ``label:line: rule``."""
    row = table.row_of(module)
    if row is None:
        return [f"{label}:1: module {module} belongs to no package of the import table "
                f"({TABLE_DOC.relative_to(ROOT)}, '{TABLE_HEADING.lstrip('# ')}'): add a row"]
    allowed = table.allowed[row]
    shown = ", ".join(sorted(allowed)) or "nothing"
    bad = []
    for line, name in imported_modules(source, module, is_package, exists):
        if name == "<computed>":
            bad.append(f"{label}:{line}: {row} imports a module by a computed name; the import table "
                       "cannot check it (use a literal name)")
            continue
        top = name.split(".")[0]
        if top in sys.stdlib_module_names:
            continue
        if top in FIRST_PARTY:
            target = table.row_of(name)
            if target is None:
                bad.append(f"{label}:{line}: {row} imports {name}, which belongs to no package of the import table")
            elif target != row and target not in allowed:
                bad.append(f"{label}:{line}: {row} imports {name} (package {target}); the import table allows "
                           f"{row} to import only: {shown}")
        elif top not in allowed:
            bad.append(f"{label}:{line}: {row} imports the third-party module {top}; the import table allows "
                       f"{row} to import only: {shown}")
    return bad


def check_tree(root: pathlib.Path, table: ImportTable) -> list[str]:
    """Violations of every ``*.py`` under the first-party packages of ``root``."""
    bad = []
    for top in FIRST_PARTY:
        for path in sorted((root / top).rglob("*.py")):
            bad += check_source(path.read_text(), str(path.relative_to(root)), module_name(path, root),
                                path.name == "__init__.py", table, lambda n: is_module(n, root))
    return bad


def table_cycle(table: ImportTable) -> list[str] | None:
    """A cycle among the table's first-party rows (as a list of packages), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(p: str) -> list[str] | None:
        state[p] = 1
        stack.append(p)
        for q in sorted(table.allowed.get(p, ())):
            if q not in table.allowed:
                continue
            if state.get(q) == 1:
                return stack[stack.index(q):] + [q]
            if q not in state and (cyc := visit(q)):
                return cyc
        stack.pop()
        state[p] = 2
        return None

    for p in table.packages:
        if p not in state and (cyc := visit(p)):
            return cyc
    return None


def allowed_closure(table: ImportTable, packages) -> set[str]:
    """Everything ``packages`` may load, directly or through what they may import."""
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += table.allowed.get(p, ())
    return seen


# ---------------------------------------------------------------- the repository obeys the table

def test_every_import_is_allowed_by_the_table():
    bad = check_tree(ROOT, load_table())
    assert not bad, "\n".join(bad)


def test_the_table_is_acyclic_and_names_only_known_packages():
    table = load_table()
    assert table_cycle(table) is None, f"the import table has a cycle: {' -> '.join(table_cycle(table))}"
    for row, names in table.allowed.items():
        assert row.split(".")[0] in FIRST_PARTY, f"row {row} is not a package of this repository"
        for name in names:
            top = name.split(".")[0]
            assert top not in sys.stdlib_module_names, f"row {row} lists the standard-library module {name}"
            if top in FIRST_PARTY:
                assert name in table.allowed, f"row {row} may import {name}, which has no row of its own"
            else:
                assert "." not in name, f"row {row}: a third-party entry is a top-level module name, not {name}"


def test_the_table_keeps_torch_and_the_compiler_out_of_the_lower_and_deployment_layers():
    """The design's hard rules (the "why" of the rows), read back from the table so that
    an edit of the table cannot break them: no path of allowed imports leads from these packages to
    torch, and the runtime and the simulator reach only the device link, the artifact reader, the
    target data and numpy."""
    table = load_table()
    torch_free = ["dlavm.sym", "dlavm.ir", "dlavm.target", "dlavm.passes", "dlavm.task", "dlavm.backend",
                  "dlavm.runtime", "dlavm.devlink", "dlavm.artifact", "hw_models", "dlavm.tokenizer"]
    assert not [p for p in torch_free if "torch" in allowed_closure(table, [p])]
    assert allowed_closure(table, ["dlavm.runtime"]) <= {
        "dlavm.runtime", "numpy", "dlavm.sym", "dlavm.target", "dlavm.artifact", "dlavm.devlink", "yaml",
        "dlavm.host_ops"}
    assert allowed_closure(table, ["hw_models"]) <= {
        "hw_models", "numpy", "dlavm.sym", "dlavm.target", "dlavm.devlink", "yaml"}


# ---------------------------------------------------------------- the checker catches each kind of import

def _violations(source: str, module: str) -> list[str]:
    """Check ``source`` as the file of ``module`` (``pkg/__init__`` for a package's own file)."""
    name, is_package = module.removesuffix("/__init__"), module.endswith("/__init__")
    return check_source(source, module.replace(".", "/") + ".py", name, is_package, load_table())


@pytest.mark.parametrize("module,source,line,imported", [
    # from X import name, where X.name is a module
    ("dlavm.ir.injected", "from dlavm.sym import Expr\nfrom dlavm import frontend\n", 2, "dlavm.frontend"),
    # importlib with a literal name
    ("dlavm.sym.injected", "import importlib\nmod = importlib.import_module('torch')\n", 2, "torch"),
    # from importlib import import_module
    ("dlavm.target.injected", "from importlib import import_module\nimport_module('dlavm.passes.fuse')\n", 2,
     "dlavm.passes"),
    # __import__ with a literal name
    ("dlavm.task.injected", "\n\n__import__('dlavm.compiler')\n", 3, "dlavm.compiler"),
    # relative import, two levels up
    ("dlavm.ir.injected", "from ..backend import build\n", 1, "dlavm.backend"),
    # relative import from a package's __init__ (``is_package``: one dot is the package itself)
    ("dlavm.runtime/__init__", "from ..models import registry\n", 1, "dlavm.models"),
    # import a.b as c
    ("dlavm.runtime.injected", "import numpy as np\nimport hw_models.simulator as sim\n", 2, "hw_models"),
    # an import inside a function
    ("hw_models.injected", "def run():\n    if True:\n        from dlavm.runtime import runtime\n", 3,
     "dlavm.runtime"),
    # a third-party module the row does not list
    ("dlavm.passes.injected", "import numpy\n\ndef f():\n    import torch.nn\n", 4, "torch"),
    # from X import name, where name is not a module: the import is of X
    ("dlavm.backend.injected", "from dlavm.frontend.torch import from_torch\n", 1, "dlavm.frontend"),
])
def test_each_kind_of_forbidden_import_is_reported_with_file_line_and_rule(module, source, line, imported):
    bad = _violations(source, module)
    assert len(bad) == 1, bad
    label = module.replace(".", "/") + ".py"
    row = load_table().row_of(module.removesuffix("/__init__"))
    assert bad[0].startswith(f"{label}:{line}: {row} imports ")
    assert imported in bad[0] and "the import table allows" in bad[0] and "to import only" in bad[0]


def test_a_computed_dynamic_import_is_refused():
    bad = _violations("import importlib\nname = 'dlavm.' + 'cli'\nimportlib.import_module(name)\n", "dlavm.ir.x")
    assert len(bad) == 1 and bad[0].startswith("dlavm/ir/x.py:3: dlavm.ir imports a module by a computed name")


def test_allowed_imports_pass():
    assert _violations("import numpy as np\nfrom dlavm.target.isa import reg\nfrom . import hal\n"
                       "import json, socket\n", "dlavm.devlink.injected") == []
    assert _violations("from .node import Call\nfrom dlavm import sym\n", "dlavm.ir.injected") == []


def test_a_file_outside_every_row_is_reported(tmp_path):
    (tmp_path / "dlavm" / "newpkg").mkdir(parents=True)
    (tmp_path / "dlavm" / "newpkg" / "__init__.py").write_text("")
    (tmp_path / "hw_models").mkdir()
    bad = check_tree(tmp_path, load_table())
    assert bad == ["dlavm/newpkg/__init__.py:1: module dlavm.newpkg belongs to no package of the import table "
                   "(doc/architecture.md, 'Import rules'): add a row"]


def test_violations_written_into_a_copy_of_the_tree_are_found(tmp_path):
    """The five kinds of violation the old deny-list test let through, as files in a copy of the packages."""
    for top in FIRST_PARTY:
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    injected = {
        "dlavm/ir/layering_probe.py": "from dlavm import frontend\n",
        "dlavm/sym/layering_probe.py": "import importlib\nimportlib.import_module('torch')\n",
        "dlavm/runtime/layering_probe.py": "def f():\n    import hw_models\n",
        "dlavm/reference/layering_probe.py": "from ..models import builtin\n",
        "hw_models/layering_probe.py": "import dlavm.runtime.runtime as rt\n",
    }
    before = set(check_tree(tmp_path, load_table()))
    for rel, text in injected.items():
        (tmp_path / rel).write_text(text)
    new = sorted(set(check_tree(tmp_path, load_table())) - before)
    assert [b.split(":")[0] for b in new] == sorted(injected), "\n".join(new)


def test_the_parser_refuses_a_malformed_table():
    with pytest.raises(ValueError, match="has two rows"):
        parse_import_table(f"{TABLE_HEADING}\n\n| package | may import |\n|---|---|\n| `a` | |\n| `a` | |\n")
    with pytest.raises(ValueError, match="no '## Import rules' section"):
        parse_import_table("# nothing\n")
    t = parse_import_table(f"{TABLE_HEADING}\n\n| package | may import | why |\n|---|---|---|\n"
                           "| `dlavm.ir` | `dlavm.sym` | |\n| `dlavm.sym` | nothing | |\n")
    assert t.allowed == {"dlavm.ir": frozenset({"dlavm.sym"}), "dlavm.sym": frozenset()}


def test_a_cycle_in_the_table_is_found():
    t = ImportTable({"a": frozenset({"b"}), "b": frozenset({"c", "numpy"}), "c": frozenset({"a"})})
    assert table_cycle(t) == ["a", "b", "c", "a"]


# ---------------------------------------------------------------- what really loads, in a fresh interpreter

def _loaded_by(packages: list[str]) -> tuple[list[str], list[str]]:
    """(modules imported, first-party or table-listed third-party modules loaded) by importing every
    module of ``packages`` (not of a subpackage with its own row) in a fresh interpreter."""
    table = load_table()
    third_party = {n for names in table.allowed.values() for n in names if n.split(".")[0] not in FIRST_PARTY}
    mods = []
    for pkg in packages:
        base = ROOT.joinpath(*pkg.split("."))
        if base.is_dir():
            mods += [m for m in (module_name(p) for p in sorted(base.rglob("*.py"))
                                 if p.name != "__main__.py" and "__pycache__" not in p.parts)
                     if table.row_of(m) == pkg]   # a subpackage with a row of its own is not this package
    code = ("import importlib, json, sys\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = [m for m in json.loads(out.stdout.splitlines()[-1])
              if m.split(".")[0] in FIRST_PARTY or m.split(".")[0] in third_party]
    return mods, loaded


@pytest.mark.parametrize("packages", [["dlavm.runtime", "dlavm.devlink", "dlavm.artifact"], ["hw_models"],
                                      ["devproc.runtime", "devproc.lang"]])
def test_a_deployment_package_loads_only_what_the_table_allows(packages):
    """A deployment host has neither torch nor the compiler: importing every module of the runtime
    (and of the device link and artifact packages it builds on), or of the simulator, in a fresh
    interpreter loads nothing outside what the table lets them reach."""
    table = load_table()
    allowed = allowed_closure(table, packages)
    mods, loaded = _loaded_by(packages)
    assert any(m.startswith(packages[0]) for m in mods)
    # The root package is loaded as the parent of every ``dlavm.*`` module; its own edge (the
    # compiler, on first use of ``dlavm.compile``) is lazy and checked statically above.
    outside = [m for m in loaded if m not in ROOT_ONLY and (
        table.row_of(m) not in allowed if m.split(".")[0] in FIRST_PARTY else m.split(".")[0] not in allowed)]
    assert not outside, f"importing {packages} loads {outside}"
    assert "torch" not in {m.split(".")[0] for m in loaded}
