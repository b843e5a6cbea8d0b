"""to_cpp has exactly Python's semantics: one g++ program, many expressions.

300 random expressions (fixed seed) become C++ functions using
clib/include/dlavm/sym_rt.h; each runs at 20 random points, negative values
included, and must print what sym.evaluate computes. Points where Python
divides by zero, or where some intermediate value could leave int64_t, are
left out (both are outside the C++ domain by definition).
"""
import random
import subprocess
from pathlib import Path

from dlavm import sym

from sym_gen import VAR_BOUNDS, build, random_env, random_tree

ROOT = Path(__file__).resolve().parents[2]
N_EXPRS, N_POINTS, SAFE = 300, 20, 2 ** 40
NAMES = list(VAR_BOUNDS)


def _magnitudes_ok(e, env) -> bool:
    """Every subexpression value (eagerly, ignoring those that divide by zero)
    stays within SAFE, so no int64_t intermediate can overflow."""
    vals = {}
    for n in sym.walk(e):
        try:
            v = _eval_node(n, [vals[a] for a in n.args], env)
        except ZeroDivisionError:
            v = None
        vals[n] = v
        if v is not None and abs(v) > SAFE:
            return False
        if n.kind == "add" and any(abs(c) > SAFE for c in n.data):
            return False
    return True


def _eval_node(n, a, env):
    k = n.kind
    if k == "const":
        return n.data[0]
    if k == "var":
        return env[n.name]
    if k == "select":
        return a[1] if a[0] else a[2]
    if None in a:
        return None
    if k == "add":
        terms = [x * c for x, c in zip(a, n.data[1:])]
        if any(abs(t) > SAFE for t in terms):
            return SAFE + 1
        return n.data[0] + sum(terms)
    if k == "mul":
        out = 1
        for x, p in zip(a, n.data):
            out *= x ** p
        return out
    ops = {"floordiv": lambda p, q: p // q, "mod": lambda p, q: p % q, "min": min, "max": max,
           "lt": lambda p, q: int(p < q), "eq": lambda p, q: int(p == q),
           "ne": lambda p, q: int(p != q), "and": lambda *v: int(all(v)),
           "or": lambda *v: int(any(v))}
    return ops[k](*a)


def test_cpp_export_matches_python(tmp_path):
    rng = random.Random(20240611)
    exprs, cases, expected = [], [], []
    while len(exprs) < N_EXPRS:
        try:
            e = build(random_tree(rng, rng.randint(1, 5)))
        except ZeroDivisionError:
            continue
        if e.is_const:
            continue
        idx = len(exprs)
        exprs.append(e)
        for _ in range(N_POINTS):
            env = random_env(rng)
            try:
                v = sym.evaluate(e, env)
            except ZeroDivisionError:
                continue
            if not _magnitudes_ok(e, env):
                continue
            cases.append([idx] + [env[name] for name in NAMES])
            expected.append(v)
    assert len(cases) > N_EXPRS * N_POINTS // 2  # the filters keep most points

    params = ", ".join(f"[[maybe_unused]] int64_t {name}" for name in NAMES)
    lines = ['#include <cstdio>', '#include <cstdint>', '#include "dlavm/sym_rt.h"', ""]
    for i, e in enumerate(exprs):
        lines.append(f"static int64_t f{i}({params}) {{ return {sym.to_cpp(e)}; }}")
    lines.append(f"typedef int64_t (*fn)({', '.join(['int64_t'] * len(NAMES))});")
    lines.append("static const fn fns[] = {" + ", ".join(f"f{i}" for i in range(len(exprs))) + "};")
    lines.append(f"static const int64_t cases[][{len(NAMES) + 1}] = {{")
    lines += ["  {" + ", ".join(map(str, c)) + "}," for c in cases]
    lines.append("};")
    args = ", ".join(f"c[{j + 1}]" for j in range(len(NAMES)))
    lines.append("int main() { for (const auto& c : cases) "
                 f'std::printf("%lld\\n", (long long)fns[c[0]]({args})); return 0; }}')
    src = tmp_path / "sym_cpp_check.cc"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "sym_cpp_check"
    cc = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror",
                         f"-I{ROOT / 'clib' / 'include'}", str(src), "-o", str(exe)],
                        capture_output=True, text=True, timeout=300)
    assert cc.returncode == 0, cc.stderr[-4000:]
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60)
    got = [int(line) for line in out.stdout.split()]
    assert len(got) == len(expected)
    bad = [(str(exprs[c[0]]), sym.to_cpp(exprs[c[0]]), c[1:], g, v)
           for c, g, v in zip(cases, got, expected) if g != v]
    assert not bad, bad[:5]
