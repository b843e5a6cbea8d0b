"""The command line of a saved pipeline (doc/devproc.md, "Running a saved pipeline"): the Python runtime's, and
the generated C++ program's (clib), which read and write the same things."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from ..lang.errors import DevprocError
from ..lang.types import ImageType, StringType
from .library import load
from .runtime import Runtime

OUTPUTS = "outputs.json"
MAX_INPUT_BYTES = 1 << 30


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devproc.runtime", description="Run a saved DevProc pipeline.")
    p.add_argument("pipeline", help="the saved pipeline's folder")
    p.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                   help="an input: NAME=TEXT for a String, NAME=@FILE for a file (a String's UTF-8 text, a .npy "
                        "tensor, an image: PNG or PPM)")
    p.add_argument("--device", action="append", default=[], metavar="[NAME=]URI",
                   help="sim://HOST:PORT for every model, or NAME=URI for one (default: in-process simulators)")
    p.add_argument("--out", required=True, help="folder for outputs.json and the outputs")
    p.add_argument("--trace", metavar="FILE", help="write the run as a Perfetto / Chrome trace (JSON)")
    return p


def read_input(name: str, t, value: str):
    """The value of ``--input NAME=VALUE`` for an input of type ``t``."""
    if not value.startswith("@"):
        if isinstance(t, StringType):
            return value
        raise DevprocError(f"--input {name}: a {t!r} input is given as {name}=@FILE")
    path = value[1:]
    try:
        if os.path.getsize(path) > MAX_INPUT_BYTES:
            raise DevprocError(f"--input {name}: {path} is larger than {MAX_INPUT_BYTES} bytes")
        if isinstance(t, StringType):
            with open(path, encoding="utf-8") as f:
                return f.read()
        if isinstance(t, ImageType) and not path.endswith(".npy"):
            from ..lang.image import ImageError, load_image
            try:
                return load_image(path)
            except ImageError as e:
                raise DevprocError(f"--input {name}: {e}") from None
        return np.load(path, allow_pickle=False)
    except OSError as e:
        raise DevprocError(f"--input {name}: cannot read {path} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise DevprocError(f"--input {name}: {path} is not UTF-8 text") from None
    except ValueError as e:
        raise DevprocError(f"--input {name}: {path} is not a .npy array ({str(e).splitlines()[0]})") from None


def write_outputs(out_dir: str, result, names: list | None = None) -> list:
    """Write each output of ``result`` (a value or a tuple) as out<k>.txt (a String) or out<k>.npy and list them in
    outputs.json; returns the list."""
    values = list(result) if isinstance(result, tuple) else [result]
    os.makedirs(out_dir, exist_ok=True)
    records = []
    for k, v in enumerate(values):
        if isinstance(v, str):
            rel = f"out{k}.txt"
            with open(os.path.join(out_dir, rel), "w", encoding="utf-8", newline="") as f:
                f.write(v)
            records.append({"name": f"out{k}", "kind": "string", "dtype": None, "shape": None, "file": rel})
        else:
            rel = f"out{k}.npy"
            np.save(os.path.join(out_dir, rel), np.ascontiguousarray(v), allow_pickle=False)
            records.append({"name": f"out{k}", "kind": "tensor", "dtype": v.dtype.name, "shape": list(v.shape),
                            "file": rel})
    with open(os.path.join(out_dir, OUTPUTS), "w") as f:
        json.dump(records, f, indent=1)
    return records


def read_outputs(out_dir: str) -> list:
    """The outputs a run wrote (str or numpy array each)."""
    with open(os.path.join(out_dir, OUTPUTS)) as f:
        records = json.load(f)
    out = []
    for r in records:
        path = os.path.join(out_dir, r["file"])
        if r["kind"] == "string":
            with open(path, encoding="utf-8", newline="") as f:
                out.append(f.read())
        else:
            out.append(np.load(path, allow_pickle=False))
    return out


def main(argv: list) -> int:
    p = _parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        lib = load(args.pipeline)
        shared, per_model = None, {}
        for d in args.device:
            name, sep, uri = d.partition("=")
            if sep and not name.startswith("sim:"):
                per_model[name] = uri
            else:
                shared = d
        types = dict(lib.inputs)
        given = {}
        for item in args.input:
            name, sep, value = item.partition("=")
            if not sep:
                raise DevprocError(f"--input {item!r}: give NAME=VALUE")
            if name not in types:
                raise DevprocError(f"--input {name}: the pipeline has no input {name!r} (inputs: "
                                   f"{', '.join(types) or 'none'})")
            given[name] = read_input(name, types[name], value)
        rt = Runtime(lib, device=shared, devices=per_model)
        write_outputs(args.out, rt.run(**given))
        if args.trace:
            with open(args.trace, "w") as f:
                json.dump(rt.trace(), f)
    except DevprocError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
