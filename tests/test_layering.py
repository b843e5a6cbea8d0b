"""Lower layers never import higher ones (doc/architecture.md, "Import rules")."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]

# package -> module prefixes it must not import
FORBIDDEN = {
    "dlavm/sym": ["dlavm", "torch", "numpy"],
    "dlavm/ir": ["torch", "dlavm.frontend", "dlavm.reference", "dlavm.models", "dlavm.cli",
                 "dlavm.target", "dlavm.runtime", "hw_models"],
    "dlavm/target": ["torch", "dlavm.ir", "dlavm.frontend", "dlavm.reference", "dlavm.cli", "hw_models"],
    "dlavm/runtime": ["torch", "dlavm.ir", "dlavm.frontend", "dlavm.reference", "dlavm.models", "dlavm.passes",
                      "dlavm.task", "dlavm.backend", "dlavm.compiler", "dlavm.cli"],
    "dlavm/passes": ["torch", "dlavm.frontend", "dlavm.reference", "dlavm.models", "dlavm.cli", "hw_models"],
    "dlavm/task": ["torch", "dlavm.frontend", "dlavm.reference", "dlavm.models", "dlavm.cli", "dlavm.backend",
                   "dlavm.compiler", "hw_models"],
    "dlavm/backend": ["torch", "dlavm.frontend", "dlavm.reference", "dlavm.models", "dlavm.cli",
                      "dlavm.compiler", "hw_models"],
    "dlavm/tokenizer": ["torch", "dlavm.ir", "dlavm.frontend", "dlavm.reference", "dlavm.passes", "dlavm.task",
                        "dlavm.backend", "dlavm.compiler", "dlavm.cli", "hw_models"],
    "dlavm/frontend": ["dlavm.cli", "hw_models", "dlavm.runtime"],
    "dlavm/reference": ["dlavm.frontend", "dlavm.cli", "dlavm.models", "hw_models"],
    "hw_models": ["dlavm.ir", "dlavm.frontend", "dlavm.reference", "dlavm.models", "dlavm.cli", "torch"],
}


def _imports(path: pathlib.Path, package: str):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                parts = list(path.relative_to(ROOT).with_suffix("").parts)[:-node.level]
                base = ".".join(parts)
                yield f"{base}.{node.module}" if node.module else base
            else:
                yield node.module


def test_no_upward_imports():
    bad = []
    for pkg, forbidden in FORBIDDEN.items():
        for path in (ROOT / pkg).rglob("*.py"):
            for name in _imports(path, pkg):
                if pkg == "dlavm/sym" and name.startswith("dlavm.sym"):
                    continue
                for f in forbidden:
                    if name == f or name.startswith(f + "."):
                        bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_runtime_imports_without_torch_or_compiler():
    """A deployment host has neither torch nor the compiler: loading the runtime must not import them."""
    import subprocess
    import sys
    code = ("import sys, dlavm.runtime.runtime, dlavm.runtime.loader, dlavm.runtime.socket_client; "
            "bad = [m for m in ('torch', 'dlavm.ir', 'dlavm.frontend', 'dlavm.passes', 'dlavm.backend') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
