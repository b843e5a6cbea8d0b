"""The CLI's bad-input table (doc/cli.md, "Contract"): every row is a command line that must fail
with exactly one ``error: ...`` line on stderr naming the offending value, a non-zero exit code
that is not the internal-error code, and no traceback.

``argv`` may hold ``{mlp}`` (a non-LLM artifact), ``{llm}`` (an LLM artifact, context 16) and
``{ws}`` (a folder holding the malformed inputs made by :func:`make_workspace`). ``names`` are the
substrings the message must contain: the value the user gave and, where there is one, the name of
the option or field. A row with ``tool="script"`` runs ``script/main.py`` instead of ``dlavm``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BadInput:
    """One row: ``argv`` must fail with one ``error:`` line containing every string of ``names``."""

    argv: tuple
    names: tuple
    tool: str = "dlavm"

    @property
    def id(self) -> str:
        return " ".join((self.tool,) + self.argv).replace("{ws}/", "")


def _row(cmd: str, *names: str, tool: str = "dlavm") -> BadInput:
    import shlex
    return BadInput(tuple(shlex.split(cmd)), names, tool)


#: Each malformed target file (name -> JSON text) and what its refusal must name.
BAD_TARGET_FILES = {
    "clock_inf.json": ('{"base": "tiny", "name": "t", "clock_mhz": Infinity}', ("clock_mhz", "inf")),
    "clock_nan.json": ('{"base": "tiny", "name": "t", "clock_mhz": NaN}', ("clock_mhz", "nan")),
    "clock_str.json": ('{"base": "tiny", "name": "t", "clock_mhz": "200"}', ("clock_mhz", "'200'")),
    "clock_zero.json": ('{"base": "tiny", "name": "t", "clock_mhz": 0}', ("clock_mhz", "0")),
    "channels_float.json": ('{"base": "tiny", "name": "t", "hbm_channels": 2.5}', ("hbm_channels", "2.5")),
    "channels_true.json": ('{"base": "tiny", "name": "t", "hbm_channels": true}', ("hbm_channels", "True")),
    "channels_intfloat.json": ('{"base": "tiny", "name": "t", "hbm_channels": 2.0}', ("hbm_channels", "2.0")),
    "tin_float.json": ('{"base": "tiny", "name": "t", "tin": 16.5}', ("tin", "16.5")),
    "tin_zero.json": ('{"base": "tiny", "name": "t", "tin": 0}', ("tin", "0")),
    "sram_negative.json": ('{"base": "tiny", "name": "t", "sram_bytes": -1}', ("sram_bytes", "-1")),
    "channels_huge.json": ('{"base": "tiny", "name": "t", "hbm_channels": 100000000000000000000}',
                           ("hbm_channels", "100000000000000000000")),
    "latency_float.json": ('{"base": "tiny", "name": "t", "mvm_latency": 1e400}', ("mvm_latency", "inf")),
    "name_number.json": ('{"base": "tiny", "name": 5}', ("name", "5")),
    "formats_string.json": ('{"base": "tiny", "name": "t", "weight_formats": "int4"}', ("weight_formats", "int4")),
    "formats_unknown.json": ('{"base": "tiny", "name": "t", "weight_formats": ["int3"]}', ("int3",)),
    "unknown_field.json": ('{"base": "tiny", "name": "t", "hbm_chanels": 4}', ("hbm_chanels",)),
    "description_list.json": ('{"base": "tiny", "name": "t", "description": [1]}', ("description", "[1]")),
    "not_json.json": ('{"base": "tiny",', ("not_json.json",)),
    "list.json": ("[1, 2]", ("list.json",)),
    "base_unknown.json": ('{"base": "nosuchbase", "name": "t"}', ("nosuchbase",)),
    "base_self.json": ('{"base": "base_self.json", "name": "t"}', ("base_self.json",)),
    "base_number.json": ('{"base": 7, "name": "t"}', ("base", "7")),
    "missing_fields.json": ('{"name": "t", "tin": 16}', ("clock_mhz",)),
}

#: Files with user model factories that fail in each way a user's code can.
FACTORY_FILES = {
    "raises.py": "def build(**kw):\n    raise RuntimeError('model config broken')\n",
    "syntax.py": "def build(:\n    pass\n",
    "wrong_type.py": "def build(**kw):\n    return 42\n",
    "import_error.py": "import no_such_package_xyz\n\ndef build(**kw):\n    pass\n",
    "no_kwargs.py": "def build():\n    raise AssertionError('unreachable')\n",
    "not_callable.py": "build = 3\n",
    "data_dependent.py": ("import torch\n\nclass Branchy(torch.nn.Module):\n    def forward(self, x):\n"
                          "        return x * 2 if x.sum() > 0 else x\n\n"
                          "def build(**kw):\n    seq = torch.export.Dim('seq', min=2, max=32)\n"
                          "    return Branchy(), (torch.randn(4, 8),), {'x': {0: seq}}\n"),
    "bad_example.py": "import torch\n\ndef build(**kw):\n    return torch.nn.Linear(8, 8), (torch.randn(4, 9),)\n",
    "unbounded.py": ("import torch\n\ndef build():\n    return torch.nn.Linear(8, 8), (torch.randn(4, 8),), "
                     "({0: torch.export.Dim('rows')},)\n"),
    "auto_dim.py": ("import torch\n\ndef build():\n    return torch.nn.Linear(8, 8), (torch.randn(4, 8),), "
                    "({0: torch.export.Dim.AUTO},)\n"),
    "ds_length.py": ("import torch\n\ndef build():\n    return torch.nn.Linear(8, 8), (torch.randn(4, 8),), "
                     "({0: torch.export.Dim('rows', max=8)}, None)\n"),
    "empty_output.py": ("import torch\n\nclass Empty(torch.nn.Module):\n    def forward(self, x):\n"
                        "        return x[:, :0] * 2\n\ndef build():\n    return Empty(), (torch.randn(4, 8),)\n"),
    "three_items.py": "import torch\n\ndef build():\n    return torch.nn.Linear(8, 8), (torch.randn(4, 8),), None, 1\n",
    "guard.py": ("import torch\nfrom torch import nn\n\nclass Masked(nn.Module):\n    def __init__(self):\n"
                 "        super().__init__()\n        self.register_buffer('mask', torch.tril(torch.ones(8, 8)))\n"
                 "    def forward(self, x):\n        T = x.shape[0]\n"
                 "        return x.masked_fill(self.mask[:T, :T] == 0, 0.0)\n\n"
                 "def build():\n    return Masked(), (torch.randn(4, 4),), "
                 "({0: torch.export.Dim('seq', min=2, max=8), 1: torch.export.Dim('seq', min=2, max=8)},)\n"),
}

def cases() -> list:
    """The whole table (order is stable: test ids are built from it)."""
    rows = [
        # the reproductions
        _row("import {ws}/raises.py:build", "raises.py", "model config broken"),
        _row("import {ws}/syntax.py:build", "syntax.py"),
        _row("import {ws}/wrong_type.py:build", "wrong_type.py", "int"),
        _row("import {ws}/import_error.py:build", "import_error.py", "no_such_package_xyz"),
        _row("import {ws}/no_kwargs.py:build --max-seq 8", "no_kwargs.py", "max_seq"),
        _row("import {ws}/not_callable.py:build", "not_callable.py", "build"),
        _row("import {ws}/data_dependent.py:build", "torch.export", "Branchy"),
        _row("import {ws}/bad_example.py:build", "torch.export", "[4, 9]"),
        _row("import {ws}/absent.py:build", "absent.py"),
        _row("import {ws}/absent_dir.py:build", "absent_dir.py"),
        _row("import {ws}/a_file:build", "a_file", ".py"),
        _row("import no-such-model", "no-such-model"),
        _row("import ''", "''"),
        _row("import hf:{ws}/absent_ckpt", "absent_ckpt"),
        _row("import hf:{ws}/empty_dir", "empty_dir", "config.json"),
        _row("import mlp --max-seq 0", "max_seq", "0"),
        _row("import mlp --max-seq -3", "max_seq", "-3"),
        _row("import mlp --max-seq abc", "--max-seq", "abc"),
        _row("import mlp --max-seq 1.5", "--max-seq", "1.5"),
        _row("import mlp --max-seq nan", "--max-seq", "nan"),
        _row("import mlp --max-seq 99999999999999999999", "max_seq", "99999999999999999999"),
        _row("import mlp --dump-ir {ws}/a_file", "a_file"),
        _row("import mlp --no-such-option", "--no-such-option"),
        _row("check mlp --dims nosuchdim=3", "nosuchdim"),
        _row("check mlp --dims seq", "seq"),
        _row("check mlp --dims seq=abc", "seq=abc"),
        _row("check mlp --dims =3", "=3"),
        _row("check mlp --dims seq=0", "seq", "0"),
        _row("check mlp --dims seq=100000", "seq", "100000"),
        _row("check mlp --dims seq=1.5", "seq=1.5"),
        _row("check mlp --max-seq 0", "max_seq", "0"),
        _row("check llama2-7b-shape --max-seq 8", "llama2-7b-shape"),
        _row("ops --no-such-option", "--no-such-option"),
        _row("nosuchcommand", "nosuchcommand"),
        _row("compile mlp -o {ws}/out_bad --max-seq 0", "max_seq", "0"),
        _row("compile mlp -o {ws}/out_bad --max-seq -5", "max_seq", "-5"),
        _row("compile mlp -o {ws}/out_bad -t nosuchtarget", "nosuchtarget"),
        _row("compile mlp -o {ws}/out_bad -t {ws}", "ws"),
        _row("compile mlp -o {ws}/out_bad --weights int3", "int3"),
        _row("compile mlp -o {ws}/a_file -t tiny", "a_file"),
        _row("compile mlp", "-o"),
        _row("compile tiny-llama --llm -o {ws}/out_bad --max-seq 0", "max", "0"),
        _row("run {ws}/absent_artifact", "absent_artifact"),
        _row("run {ws}/a_file", "a_file"),
        _row("run {ws}/empty_dir", "empty_dir"),
        _row("run {ws}/garbage_artifact", "garbage_artifact"),
        _row("run {mlp} --entry nosuchentry", "nosuchentry"),
        _row("run {llm} --seq 17", "17"),
        _row("run {llm} --seq 0", "seq", "0"),
        _row("disasm {ws}/empty_dir", "empty_dir"),
        _row("disasm {ws}/garbage_artifact", "garbage_artifact"),
        _row("disasm {ws}/a_file", "a_file"),
        _row("profile {mlp} --entry nosuchentry", "nosuchentry"),
        _row("profile {mlp} --trace {ws}/empty_dir", "empty_dir"),
        _row("profile {llm} --ctx 1000", "1000"),
        _row("profile {llm} --seq 4 --ctx 2", "ctx", "2"),
        _row("profile {ws}/garbage_artifact", "garbage_artifact"),
        _row("generate {llm} --prompt-ids 1,2 --max-new-tokens -5", "max_new_tokens", "-5"),
        _row("generate {llm} --prompt-ids 1,2 --max-new-tokens 0", "max_new_tokens", "0"),
        _row("generate {llm} --prompt-ids 1,2 --temperature nan", "temperature", "nan"),
        _row("generate {llm} --prompt-ids 1,2 --temperature inf", "temperature", "inf"),
        _row("generate {llm} --prompt-ids 1,2 --temperature -1", "temperature", "-1"),
        _row("generate {llm} --prompt-ids 1,2 --temperature abc", "--temperature", "abc"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --top-p 0", "top_p", "0"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --top-p 1.5", "top_p", "1.5"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --top-p nan", "top_p", "nan"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --top-k -1", "top_k", "-1"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --top-k 99999999999999999999", "top_k",
             "99999999999999999999"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --top-k 1.5", "--top-k", "1.5"),
        _row("generate {llm} --prompt-ids 1,2 --temperature 1 --seed -1", "seed", "-1"),
        _row("generate {llm} --prompt-ids 1,2 --eos-id -1", "eos_id", "-1"),
        _row("generate {llm} --prompt-ids 1,2 --eos-id 100000", "eos_id", "100000"),
        _row("generate {llm} --prompt-ids ''", "prompt"),
        _row("generate {llm} --prompt-ids 1,x", "1,x"),
        _row("generate {llm} --prompt-ids -1", "-1"),
        _row("generate {llm} --prompt-ids 100000", "100000"),
        _row("generate {llm} --prompt-ids " + ",".join(["1"] * 17), "17"),
        _row("generate {llm} --prompt '' --demo-tokenizer", "prompt"),
        _row("generate {llm} --prompt hello", "--prompt"),
        _row("generate {llm} --prompt hello --prompt-ids 1", "--prompt-ids"),
        _row("generate {llm} --prompt hello --tokenizer {ws}/bad_tokenizer.json", "bad_tokenizer.json"),
        _row("generate {mlp} --prompt-ids 1", "mlp"),
        _row("generate --prompt-ids 1", "ARTIFACT", "--connect"),
        _row("generate {llm} --connect 127.0.0.1:1 --prompt-ids 1", "ARTIFACT"),
        _row("generate --connect nope --prompt hi", "--connect", "nope"),
        _row("generate --connect 127.0.0.1:1 --prompt hi", "127.0.0.1:1"),
        _row("serve {mlp}", "mlp", "not an LLM"),
        _row("serve {llm} --host 0.0.0.0", "0.0.0.0", "--token"),
        _row("serve {llm} --device tcp://127.0.0.1:1", "tcp://"),
        _row("serve {llm} --port 70000", "--port", "70000"),
        _row("serve {ws}/empty_dir", "manifest.json"),
        _row("dse tiny-llama --vary tin=1.5 -o {ws}/dse_out", "tin", "1.5"),
        _row("dse tiny-llama --vary tin=2.0 -o {ws}/dse_out", "tin", "2.0"),
        _row("dse tiny-llama --vary hbm_chanels=2 -o {ws}/dse_out", "hbm_chanels"),
        _row("dse tiny-llama --vary name=x -o {ws}/dse_out", "name"),
        _row("dse tiny-llama --vary clock_mhz=nan -o {ws}/dse_out", "clock_mhz", "nan"),
        _row("dse tiny-llama --vary tin=16,16 -o {ws}/dse_out", "tin", "16"),
        _row("dse tiny-llama --vary clock_mhz=300:100:50 -o {ws}/dse_out", "clock_mhz", "300:100:50"),
        _row("dse tiny-llama --vary weights=int3 -o {ws}/dse_out", "weights", "int3"),
        _row("dse tiny-llama --ctx 16,abc -o {ws}/dse_out", "--ctx", "abc"),
        _row("dse tiny-llama --ctx 0 -o {ws}/dse_out", "ctx", "0"),
        _row("dse tiny-llama --sample lhs:0 -o {ws}/dse_out", "lhs:0"),
        _row("dse tiny-llama --sample random:100 -o {ws}/dse_out", "random:100"),
        _row("dse tiny-llama --sample sobol:4 -o {ws}/dse_out", "sobol"),
        _row("dse mlp --no-llm --ctx 16 -o {ws}/dse_out", "ctx"),
        _row("dse tiny-llama -t nosuchtarget -o {ws}/dse_out", "nosuchtarget"),
        _row("dse tiny-llama -t {ws}/tin_float.json -o {ws}/dse_out", "tin", "16.5"),
        _row("dse tiny-llama --sweep {ws}/not_json.json -o {ws}/dse_out", "not_json.json"),
        _row("dse tiny-llama --sweep {ws}/sweep_unknown_key.json -o {ws}/dse_out", "sweep_unknown_key.json",
             "varry"),
        _row("dse --ctx 16 -o {ws}/dse_out", "model"),
        _row("dse tiny-llama --workers 0 -o {ws}/dse_out", "--workers", "0"),
        _row("dse tiny-llama --point-timeout 0 -o {ws}/dse_out", "--point-timeout", "0"),
        _row("dse tiny-llama --point-timeout nan -o {ws}/dse_out", "--point-timeout", "nan"),
        _row("dse tiny-llama --point-timeout soon -o {ws}/dse_out", "--point-timeout", "soon"),
        _row("dse tiny-llama --ray nonsense -o {ws}/dse_ray1", "--ray", "nonsense"),
        _row("dse tiny-llama --ray 127.0.0.1:1 -o {ws}/dse_ray2", "127.0.0.1:1"),
        _row("dse tiny-llama -o {ws}/a_file", "a_file"),
        _row("dse report {ws}/empty_dir", "empty_dir", "no sweep results"),
        _row("dse report {ws}/garbage_store", "dse.sqlite", "not a sweep store"),
        _row("dse report {ws}/garbage_store --resource watts", "--resource", "watts"),
        _row("targets --part vu9p", "vu9p"),
        _row("chat --connect nope", "--connect", "nope"),
        _row("chat --connect 127.0.0.1:1", "127.0.0.1:1"),
        _row("diff {ws}/absent_listing {mlp}", "absent_listing"),
        _row("diff {mlp} {mlp} --at seq", "seq"),
        _row("diff {mlp} {mlp} --at seq=abc", "seq=abc"),
        _row("diff {mlp} {mlp} --at nosuchdim=3", "nosuchdim"),
        _row("diff {mlp} {mlp} --at seq=0", "seq", "0"),
        _row("diff {mlp} {mlp} --at seq=100000", "seq", "100000"),
        _row("diff {mlp} {mlp} --context -1", "context", "-1"),
        _row("diff {mlp} {mlp} --context nan", "--context", "nan"),
        _row("diff {ws}/empty_dir {mlp}", "empty_dir"),
        _row("diff {ws}/garbage_artifact {mlp}", "garbage_artifact"),
        _row("golden --case nosuchcase", "nosuchcase"),
        _row("golden --root {ws}/a_file", "a_file"),
        _row("targets --name nosuchtarget", "nosuchtarget"),
        _row("targets --file {ws}/empty_dir", "empty_dir"),
        _row("targets --file {ws}/absent.json", "absent.json"),
        _row("targets --name {ws}/garbage_artifact/manifest.json", "manifest.json", "not valid JSON"),
        _row("generate {llm} --prompt-ids 1 --tokenizer {ws}/a_file", "a_file"),
        # compile -o into a non-empty folder; --device URIs (doc/cli.md)
        _row("compile mlp -o {ws}/garbage_artifact", "garbage_artifact", "--force"),
        _row("compile mlp -o {ws}/garbage_artifact --force", "garbage_artifact", "no dlavm artifact"),
        _row("compile mlp -o {ws}/absent_dir.py/.. -t tiny", "absent_dir.py", "--force"),
        _row("run {mlp} --device http://127.0.0.1:7000", "http://127.0.0.1:7000", "scheme"),
        _row("run {mlp} --device sim://127.0.0.1", "sim://127.0.0.1", "HOST:PORT"),
        _row("run {mlp} --device sim://127.0.0.1:1", "127.0.0.1:1"),
        _row("profile {mlp} --device sim://127.0.0.1:0", "--device", "'0'"),
        _row("generate {llm} --prompt-ids 1 --device sim://127.0.0.1:99999", "--device", "99999"),
    ]
    for name, (_, names) in BAD_TARGET_FILES.items():
        rows.append(_row(f"targets --file {{ws}}/{name}", name, *names))
    for name in ("clock_inf.json", "channels_float.json", "channels_true.json", "tin_float.json"):
        rows.append(_row(f"compile mlp -t {{ws}}/{name} -o {{ws}}/out_bad", name, *BAD_TARGET_FILES[name][1]))
    for opt in ("--seq", "--ctx"):
        rows += [_row(f"profile {{mlp}} {opt} {v}", v) for v in ("0", "-1", "abc", "99999999999999999999")]
    rows += [_row(f"run {{mlp}} --seq {v}", v) for v in ("0", "-1", "nan", "1e3", "99999999999999999999")]
    rows += [
        _row("--max-seq 0", "max_seq", "0", tool="script"),
        _row("--max-seq -3", "max_seq", "-3", tool="script"),
        _row("--max-seq abc", "--max-seq", "abc", tool="script"),
        _row("--generate -1", "generate", "-1", tool="script"),
        _row("--model no-such-model", "no-such-model", tool="script"),
        _row("--target nosuchtarget", "nosuchtarget", tool="script"),
        _row("--target {ws}/tin_float.json", "tin", "16.5", tool="script"),
        _row("--weights int3", "int3", tool="script"),
        _row("--no-such-option", "--no-such-option", tool="script"),
        _row("--model {ws}/empty_output.py:build", "Empty", "nothing", tool="script"),
        _row("--model {ws}/no_kwargs.py:build --max-seq 8", "no_kwargs.py", "max_seq", tool="script"),
    ]
    rows += [  # checks never pass by comparing nothing; factories and files that cannot be used
        _row("check {ws}/empty_output.py:build", "Empty", "[4, 0]", "nothing"),
        _row("check {ws}/unbounded.py:build", "rows", "max_seq"),
        _row("check {ws}/auto_dim.py:build", "input 0 axis 0", "AUTO"),
        _row("check {ws}/ds_length.py:build", "dynamic_shapes", "2 entries"),
        _row("check {ws}/three_items.py:build", "three_items.py", "4 items"),
        _row("check {ws}/guard.py:build", "Not all values of seq", "guard"),
        _row("check {ws}/no_kwargs.py:build --max-seq 8", "no_kwargs.py", "max_seq"),
        _row("check cnn --max-seq 8", "cnn", "max_seq", "max_batch"),
        _row("run {mlp} --seq 1000", "seq=1000", "[1, 32]"),
        _row("run {mlp} --input {ws}/absent.npy", "absent.npy"),
        _row("run {mlp} --input {ws}/a_file", "a_file", ".npz"),
        _row("run {mlp} --input {ws}/empty_dir", "empty_dir"),
        _row("run {mlp} --input {ws}/ids_wrong_key.npz", "ids_wrong_key.npz", "'tokens'", "ids"),
        _row("run {mlp} --input {ws}/ids_missing.npz", "ids_missing.npz", "'ids'"),
        _row("run {mlp} --input {ws}/ids_float.npy", "ids_float.npy", "float32", "int64"),
        _row("run {mlp} --input {ws}/ids_rank2.npy", "ids_rank2.npy", "rank 1"),
        _row("run {mlp} --input {ws}/ids_long.npy", "ids_long.npy", "seq=33", "[1, 32]"),
        _row("run {mlp} --input {ws}/garbage.npz", "garbage.npz", "zip"),
        _row("run {mlp} --input {ws}/garbage.safetensors", "garbage.safetensors"),
        _row("run {mlp} --input {ws}/ids_two.npz", "ids_two.npz", "'extra'"),
        _row("run {mlp} --input {ws}/ids.npy --seq 3", "--seq", "--input"),
        _row("run {mlp} --save {ws}/out.txt", "out.txt", ".npz"),
        _row("run {mlp} --save {ws}/empty_dir", "empty_dir"),
        _row("run {mlp} --save {ws}/no_such_dir/out.npz", "no_such_dir"),
        _row("run {mlp} --model mlp", "--model", "--check"),
        _row("run {mlp} --max-seq 8", "--max-seq", "--check"),
        _row("run {llm} --check", "--check", "LLM"),
        _row("run {mlp} --check --model {ws}/raises.py:build", "raises.py", "model config broken"),
        _row("run {mlp} --check", "--model mlp", "ids"),
    ]
    return rows


def make_workspace(ws: Path) -> Path:
    """Write the malformed inputs the table refers to into ``ws``."""
    ws.mkdir(parents=True, exist_ok=True)
    for name, (text, _) in BAD_TARGET_FILES.items():
        (ws / name).write_text(text)
    for name, text in FACTORY_FILES.items():
        (ws / name).write_text(text)
    (ws / "absent_dir.py").mkdir(exist_ok=True)
    (ws / "empty_dir").mkdir(exist_ok=True)
    (ws / "a_file").write_text("not a directory\n")
    garbage = ws / "garbage_artifact"
    garbage.mkdir(exist_ok=True)
    (garbage / "manifest.json").write_text("{ this is not json")
    (ws / "garbage_store").mkdir(exist_ok=True)
    (ws / "garbage_store" / "dse.sqlite").write_bytes(b"this is no database" * 64)
    (ws / "sweep_unknown_key.json").write_text(json.dumps({"model": "tiny-llama", "varry": {"tin": [16]}}))
    (ws / "bad_tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": "oops"}}))
    import numpy as np  # input files for ``run {mlp} --input`` (its entry takes ids: int64 [seq], seq <= 32)
    ids = np.arange(5, dtype=np.int64)
    np.save(ws / "ids.npy", ids)
    np.save(ws / "ids_float.npy", ids.astype(np.float32))
    np.save(ws / "ids_rank2.npy", ids[None])
    np.save(ws / "ids_long.npy", np.zeros(33, np.int64))
    np.savez(ws / "ids_wrong_key.npz", tokens=ids)
    np.savez(ws / "ids_missing.npz")
    np.savez(ws / "ids_two.npz", ids=ids, extra=ids)
    (ws / "garbage.npz").write_bytes(b"PK not a zip")
    (ws / "garbage.safetensors").write_bytes(b"\xff" * 16)
    return ws


def make_artifacts(root: Path) -> dict:
    """``{"mlp": DIR, "llm": DIR}``: a one-layer Llama block (no torch needed) and tiny-llama compiled
    for generation with context 16, both on the ``tiny`` target, saved without a C++ driver."""
    import numpy as np

    from dlavm.compare.cases import llama_block
    from dlavm.compiler import compile as dlavm_compile
    from dlavm.llm import compile_llm
    out = {}
    if not (root / "mlp" / "manifest.json").is_file():
        mod = llama_block(max_seq=32, layers=1, rng=np.random.default_rng(0))
        dlavm_compile(mod, target="tiny", name="mlp").save(root / "mlp", driver=False)
    out["mlp"] = root / "mlp"
    if not (root / "llm" / "manifest.json").is_file():
        compile_llm("tiny-llama", target="tiny", max_seq=16).save(root / "llm", driver=False)
    out["llm"] = root / "llm"
    return out


def expand(case: BadInput, paths: dict) -> list:
    """``case.argv`` with ``{mlp}``, ``{llm}`` and ``{ws}`` replaced by ``paths``."""
    return [a.format(**{k: str(v) for k, v in paths.items()}) for a in case.argv]


__all__ = ["BadInput", "BAD_TARGET_FILES", "FACTORY_FILES", "cases", "make_workspace", "make_artifacts", "expand"]
