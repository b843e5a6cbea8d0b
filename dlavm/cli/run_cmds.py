"""``dlavm run | disasm``: run an artifact on the simulator; print its streams as assembly."""
from __future__ import annotations

from pathlib import Path

import click

from .device_option import device_hal, device_option


class InputFileError(ValueError):
    """A ``run --input`` / ``--save`` file that cannot be used: names the file, the array key and the rule."""


#: What ``--input`` reads and ``--save`` writes.
INPUT_SUFFIXES = (".npy", ".npz", ".safetensors")
SAVE_SUFFIXES = (".npy", ".npz")


@click.command("run")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
@click.option("--seq", type=int, default=None, help="Value of every dynamic dim of random inputs [default: 1].")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), default=None,
              help="Inputs from FILE (.npy: the one input; .npz or .safetensors: one array per input name) "
                   "instead of random ones.")
@click.option("--save", "save_file", type=click.Path(dir_okay=False), default=None,
              help="Write the outputs to FILE (.npz: output_0, output_1, ...; .npy: the one output).")
@click.option("--check", is_flag=True,
              help="Compare the outputs with torch (same quantised weights, and fp32); needs torch and the model "
                   "(--model, default: the recipe or hf:DIR the artifact records; a recorded file.py:factory is "
                   "run only when given as --model).")
@click.option("--model", "model", default=None,
              help="With --check: the MODEL the artifact was compiled from (recipe, hf:DIR or file.py:factory).")
@click.option("--max-seq", type=int, default=None,
              help="With --check: the --max-seq the artifact was compiled with (default: the one it records, else "
                   "the bound of its seq dim for a recipe or hf:DIR).")
@click.option("--entry", default=None, help="Entry point (default: the first).")
@click.option("--direct", is_flag=True, help="Push instructions through registers instead of AUX streams.")
@device_option
def run_cmd(artifact, seq, input_file, save_file, check, model, max_seq, entry, direct, device):
    """Run ARTIFACT on the simulator (random inputs, or --input FILE); print an output summary and cycles."""
    from dlavm.compiler import check_entry, load, random_inputs
    if input_file is not None and seq is not None:
        raise click.UsageError("--seq and --input exclude each other: the input's shapes set the dims")
    if (model is not None or max_seq is not None) and not check:
        raise click.UsageError(f"{'--model' if model is not None else '--max-seq'} is used only with --check")
    if save_file is not None and not save_file.endswith(SAVE_SUFFIXES):
        raise InputFileError(f"--save {save_file}: the file must end in .npz or .npy")
    cm = load(artifact)
    entry = check_entry(cm.manifest, entry)
    if check and cm.manifest.llm is not None:
        raise click.UsageError(f"--check compares a forward entry with torch; '{artifact}' is an LLM artifact "
                               "(compiled with --llm): use 'dlavm generate --verify'")
    if check and model is None:   # before running: a MODEL that will not be rebuilt stops here
        model = check_model(cm.manifest)
    if input_file is not None:
        inputs = read_inputs(input_file, cm.manifest, entry)
    else:
        seq = 1 if seq is None else seq
        inputs = random_inputs(cm.manifest, entry, seq)  # refuses a seq past the bounds, naming it
    rt = cm.runtime(device_hal(device, cm.manifest), mode="direct" if direct else "aux")
    state = _state_dims(cm.manifest, entry, inputs)  # LLM: a prefill of the input's tokens
    try:
        env = rt.bind_dims(entry, inputs, state)
    except (RuntimeError, ValueError) as e:  # RunError / BoundsError: shapes that do not fit the entry
        if input_file is None:
            raise
        raise InputFileError(f"--input {input_file}: {e}") from None
    outs = rt.run(entry, *inputs, dims=state)
    for i, o in enumerate(outs):
        summary = f"min {o.min():.4g} max {o.max():.4g} mean {o.mean():.4g}" if o.size else "empty"
        click.echo(f"output {i}: shape {list(o.shape)} {o.dtype}  {summary}")
    t = cm.target
    click.echo(f"cycles {rt.last_cycles:,} = {t.figures.cycles_to_us(rt.last_cycles):.1f} us at {t.clock_mhz} MHz")
    if save_file is not None:
        save_outputs(save_file, outs)
        click.echo(f"outputs written to {save_file}")
    if check:
        agreement = check_against_torch(cm, entry, inputs, outs, env, model, max_seq)
        click.echo(f"check: {agreement}")
        if not agreement.ok:
            from .errors import EXIT_NEGATIVE
            raise SystemExit(EXIT_NEGATIVE)


def _state_dims(manifest, entry: str, inputs) -> dict:
    """An LLM entry's state dims (the KV length after the call) for a prefill of the input's tokens."""
    state_dims = manifest.entries[entry].state_dims
    if not state_dims:
        return {}
    seq_dim = manifest.llm.seq_dim if manifest.llm is not None else None
    for spec, x in zip(manifest.entries[entry].inputs, inputs):
        for d, n in zip(spec.shape, getattr(x, "shape", ())):
            if d == seq_dim:
                return {s: int(n) for s in state_dims}
    return {}


def read_inputs(path: str, manifest, entry: str) -> list:
    """The arrays of ``path`` as the inputs of ``entry``, in its order, checked against the manifest:
    names (an ``.npz`` / ``.safetensors`` key per input; ``.npz`` may also use numpy's positional
    ``arr_0``, ``arr_1``, ...), and dtypes (exactly the manifest's). Shapes and dim bounds are
    checked by the runtime (:meth:`Runtime.bind_dims`). Refusals name the file, the key and the rule."""
    import numpy as np
    specs = manifest.entries[entry].inputs
    names = [s.name for s in specs]
    where = f"--input {path}"
    if not path.endswith(INPUT_SUFFIXES):
        raise InputFileError(f"{where}: the file must end in .npy, .npz or .safetensors")
    try:
        if path.endswith(".npy"):
            if len(specs) != 1:
                raise InputFileError(f"{where}: a .npy file holds one array, entry '{entry}' takes "
                                     f"{len(specs)} inputs ({', '.join(names)}): use .npz with one array per name")
            arrays = {names[0]: np.load(path, allow_pickle=False)}
        elif path.endswith(".npz"):
            import zipfile
            if not zipfile.is_zipfile(path):
                raise InputFileError(f"{where}: not a .npz file (a zip archive of .npy arrays, as numpy.savez "
                                     "writes it)")
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            positional = [f"arr_{i}" for i in range(len(names))]
            if sorted(arrays) == sorted(positional) and not set(arrays) & set(names):
                arrays = {n: arrays[p] for n, p in zip(names, positional)}
        else:
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise InputFileError(f"{where}: reading .safetensors needs the Python package 'safetensors' "
                                     "(pip install safetensors); or give the inputs as .npz") from None
            arrays = dict(load_file(path))
    except InputFileError:
        raise
    except OSError as e:
        raise InputFileError(f"{where}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 -- numpy / safetensors refuse a corrupt file in many ways
        raise InputFileError(f"{where}: not a readable {Path(path).suffix} file ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    missing = [n for n in names if n not in arrays]
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise InputFileError(f"{where}: array '{unknown[0]}' is not an input of entry '{entry}' "
                             f"(its inputs: {', '.join(names)})")
    if missing:
        raise InputFileError(f"{where}: no array '{missing[0]}' (entry '{entry}' takes {', '.join(names)})")
    out = []
    for s in specs:
        a = arrays[s.name]
        if str(a.dtype) != s.dtype:
            raise InputFileError(f"{where}: array '{s.name}' has dtype {a.dtype}, the entry takes {s.dtype}")
        if a.ndim != len(s.shape):
            raise InputFileError(f"{where}: array '{s.name}' has shape {list(a.shape)}, the entry takes rank "
                                 f"{len(s.shape)} ([{', '.join(map(str, s.shape))}])")
        out.append(a)
    return out


def save_outputs(path: str, outs: list) -> None:
    """``outs`` to ``path``: ``.npz`` with keys ``output_0``, ``output_1``, ...; ``.npy`` if there is one."""
    import numpy as np
    if path.endswith(".npy"):
        if len(outs) != 1:
            raise InputFileError(f"--save {path}: the entry has {len(outs)} outputs, a .npy file holds one: "
                                 "use .npz")
        np.save(path, outs[0])
    else:
        np.savez(path, **{f"output_{i}": o for i, o in enumerate(outs)})


def recorded_model(manifest, flag: str) -> str | None:
    """The MODEL ``flag`` (``--check`` / ``--verify``) rebuilds by default: the one the artifact records
    (``source``) when it is a recipe or ``hf:DIR`` (building either runs no code of the artifact's author);
    None when it records none. A recorded ``file.py:factory`` is refused with a one-line
    :class:`click.UsageError` quoting it: running it would execute a Python file the artifact names, so it
    runs only when the user passes it as ``--model`` (doc/cli.md)."""
    import shlex

    from dlavm.artifact import model_kind
    from dlavm.artifact.spec import quote
    src = manifest.source
    if src is None:
        return None
    if model_kind(src.spec) == "factory":   # by the string's form, whatever its recorded kind says
        raise click.UsageError(f"{flag} needs --model MODEL: the artifact was compiled from the Python factory "
                               f"{quote(src.spec)}, which is not run on the artifact's word; if you trust that "
                               f"file, pass --model {shlex.quote(src.spec)}")
    return src.spec


def check_model(manifest) -> str:
    """The MODEL ``run --check`` rebuilds without ``--model``: the recorded one (:func:`recorded_model`),
    else the artifact's model name if it is a built-in recipe; else a one-line :class:`click.UsageError`."""
    from dlavm.models import RECIPES
    model = recorded_model(manifest, "--check")
    if model is None:
        if manifest.model not in RECIPES:
            raise click.UsageError(f"--check needs --model MODEL: the artifact's model '{manifest.model}' is not a "
                                   "built-in recipe (give the MODEL it was compiled from)")
        model = manifest.model
    return model


def check_against_torch(cm, entry: str, inputs, outs, dims: dict, model: str | None, max_seq: int | None):
    """``outs`` (the device's) against torch on the same inputs: the model is rebuilt from ``model``
    (default: :func:`check_model`), imported and put through the device pipeline with the artifact's
    weight format and target, so its reference computes with the weights the device does (:func:`dlavm.reference.compare_device_with_torch`)."""
    import dlavm.devops  # noqa: F401  (registers the device ops and their specs)
    from dlavm.compiler import device_graph
    from dlavm.models import import_model
    from dlavm.models.registry import recipe_takes_max_seq
    from dlavm.passes.quantize import fake_quantized_module
    from dlavm.reference import compare_device_with_torch
    m = cm.manifest
    if model is None:
        model = check_model(m)
    if max_seq is None and m.source is not None and model == m.source.spec:
        max_seq = m.source.max_seq
    if max_seq is None and "seq" in m.dims and recipe_takes_max_seq(model):
        max_seq = m.dims["seq"].hi
    res = import_model(model, max_seq=max_seq)
    params = res.module["forward"].params
    def signature(items):
        return ", ".join(f"{n}: {dt}[{', '.join(map(str, shape))}]" for n, dt, shape in items)
    want = [(s.name, s.dtype, tuple(map(str, s.shape))) for s in m.entries[entry].inputs]
    got = [(p.name, str(p.type.dtype), tuple(map(str, p.type.shape))) for p in params]
    if want != got:
        raise click.UsageError(f"--model {model} does not match the artifact: the model takes ({signature(got)}), "
                               f"entry '{entry}' of the artifact ({signature(want)})")
    reference = fake_quantized_module(res.module, device_graph(res.module, m.weights_format, cm.target))
    return compare_device_with_torch(outs, reference, res.spec.module, inputs, dims)


@click.command("disasm")
@click.argument("artifact", type=click.Path(exists=True, file_okay=False))
def disasm_cmd(artifact):
    """Print every AUX stream of ARTIFACT as assembly (dynamic fields and guards annotated)."""
    from dlavm.runtime.loader import verify_artifact
    m = verify_artifact(artifact)
    for name, s in m.streams.items():
        click.echo(f"# stream {name} at {s.addr:#x}: {s.count} instructions")
        click.echo((Path(artifact) / s.asm).read_text(), nl=False)


COMMANDS = [run_cmd, disasm_cmd]
