"""The generated C++ host program (devproc.build.cpp) runs saved pipelines with the outputs of the Python
runtime (devproc.runtime.Runtime), bit for bit.

Pipelines compiled for target tiny: a CNN image classifier (load_image, resize, normalize, the model,
argmax), a text pipeline (tokenize -> model -> argmax -> decode, and every tensor op on a constant table), an
LLM's decode_loop greedy and sampled with prefill / decode after it, and a vision-language pipeline whose LLM
reads embeddings (the vision tower's output joined with the prompt's embeddings; decode_loop with
embedding=). The C++ programs run against ``python -m hw_models.server --target tiny``; the Python runtime
on its in-process simulator. Bad inputs are refused in one line; the text pipeline also runs in the sanitizer
flavour.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import devproc
from devproc.build.cpp import build_cpp, cpp_str, generate_cpp
from examples.devproc import classifier, textgen, vlm
from tests.clib.clib_build import SANITIZER_EXIT_CODE, install_sanitizer_env

install_sanitizer_env()
ROOT = Path(__file__).resolve().parents[2]


class Server:
    """``python -m hw_models.server --target TARGET --port 0 --port-file F`` as a child process."""

    def __init__(self, workdir: Path, target: str = "tiny"):
        pf = workdir / "port"
        self.proc = subprocess.Popen([sys.executable, "-m", "hw_models.server", "--target", target, "--port", "0",
                                      "--port-file", str(pf)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + 60
        while not (pf.exists() and pf.read_text().strip()):
            assert self.proc.poll() is None, "the simulator server exited"
            assert time.monotonic() < end, "the simulator server did not start"
            time.sleep(0.05)
        self.uri = f"sim://127.0.0.1:{int(pf.read_text())}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server2(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server2"))
    yield s
    s.stop()


def run_cpp(exe: Path, lib: Path, out: Path, inputs: dict, devices=(), check_rc: int | None = 0):
    args = [str(exe), str(lib), *[a for d in devices for a in ("--device", d)],
            *[a for k, v in inputs.items() for a in ("--input", f"{k}={v}")], "--out", str(out)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert res.returncode != SANITIZER_EXIT_CODE, res.stderr
    if check_rc is not None:
        assert res.returncode == check_rc, f"{args} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def cpp_outputs(out: Path) -> list:
    """The outputs a run wrote (OUTDIR/outputs.json: a str or an array each), checked against their records."""
    recs = json.loads((out / "outputs.json").read_text())
    got = []
    for k, r in enumerate(recs):
        assert r["name"] == f"out{k}"
        f = out / r["file"]
        if r["kind"] == "string":
            assert r["dtype"] is None and r["shape"] is None and r["file"] == f"out{k}.txt"
            got.append(f.read_bytes().decode("utf-8"))
        else:
            a = np.load(f)
            assert r["kind"] == "tensor" and a.dtype.name == r["dtype"] and list(a.shape) == r["shape"], r
            got.append(a)
    return got


def python_outputs(lib_dir: Path, inputs: dict, **kw) -> list:
    """The Python runtime's outputs, flattened in the order of the kernel's result."""
    res = devproc.runtime.Runtime(devproc.load(lib_dir), **kw).run(**inputs)
    out = []

    def walk(v):
        if isinstance(v, tuple):
            for x in v:
                walk(x)
        else:
            out.append(v)
    walk(res)
    return out


def python_cli(lib_dir: Path, out: Path, inputs: dict, devices=()) -> tuple:
    """``python -m devproc.runtime`` in this process: (exit code, stderr)."""
    import contextlib
    import io
    from devproc.runtime.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(lib_dir), *[a for d in devices for a in ("--device", d)],
                   *[a for k, v in inputs.items() for a in ("--input", f"{k}={v}")], "--out", str(out)])
    return rc, err.getvalue()


def assert_same(cpp: list, py: list) -> None:
    assert len(cpp) == len(py)
    for k, (got, want) in enumerate(zip(cpp, py)):
        if isinstance(want, str):
            assert got == want, k
        else:
            assert got.dtype == want.dtype and got.shape == want.shape, (k, got.dtype, want.dtype, got.shape,
                                                                         want.shape)
            assert got.tobytes() == np.ascontiguousarray(want).tobytes(), k


def assert_same_files(cpp_out: Path, py_out: Path) -> None:
    """The two output folders hold the same files, byte for byte (outputs.json included)."""
    names = sorted(p.name for p in cpp_out.iterdir())
    assert names == sorted(p.name for p in py_out.iterdir())
    for n in names:
        assert (cpp_out / n).read_bytes() == (py_out / n).read_bytes(), n


def error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), res.stderr
    return lines[0]


# ----------------------------------------------------------------------------- the pipelines

@devproc.kernel
def classify(path: devproc.String, model: devproc.TorchModel):
    img = devproc.resize(devproc.load_image(path), [32, 32])
    logits = model(devproc.normalize(img, list(classifier.MEAN), list(classifier.STD)))
    return devproc.argmax(logits, dim=-1), logits, devproc.resize(img, [5, 7], method="nearest")


class TinyLM(torch.nn.Module):
    """ids [1, seq] -> logits [1, seq, 512]: an embedding and a linear head."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.emb = torch.nn.Parameter(torch.randn(512, 16, generator=g))
        self.head = torch.nn.Linear(16, 512)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(512, 16, generator=g) * 0.5)

    def forward(self, ids):
        return self.head(torch.nn.functional.embedding(ids, self.emb))


@devproc.kernel
def text(prompt: devproc.String, tok: devproc.Tokenizer, lm: devproc.TorchModel, table: devproc.Tensor):
    ids = devproc.tokenize_encode(prompt, tok)
    pred = devproc.argmax(lm(devproc.to(ids, devproc.Int64)), dim=-1)
    reply = devproc.tokenize_decode(pred, tok)
    e = devproc.embed(ids, table)                                   # [1, n, 8]
    pooled = devproc.l2_normalize(devproc.mean_pool(e, devproc.ones_like(ids)), dim=-1)
    both = devproc.concat([pooled, devproc.to(devproc.to(pooled, devproc.Float16), devproc.Float32)], dim=0)
    t = devproc.transpose(devproc.unsqueeze(both, 0), 0, 2)
    hello = devproc.tokenize_encode("hello", tok)
    return reply, pred, t, devproc.to(hello, devproc.UInt8), devproc.argmax(e, dim=1, keepdim=True)


@devproc.kernel
def generate(prompt: devproc.String, tok: devproc.Tokenizer, lm: devproc.TorchModel):
    ids = devproc.tokenize_encode(prompt, tok)
    cache = devproc.KVCache()
    greedy = devproc.decode_loop(lm, ids, cache, max_new_tokens=6)
    first = devproc.argmax(devproc.prefill(lm, ids, devproc.KVCache()), keepdim=True)
    after = devproc.decode(lm, devproc.to(first, devproc.Int32), cache)
    sampled = devproc.decode_loop(lm, ids, devproc.KVCache(), max_new_tokens=8, temperature=0.8, top_k=40, top_p=0.9,
                                  seed=7)
    stopped = devproc.decode_loop(lm, ids, devproc.KVCache(), max_new_tokens=8, eos_id=[1, 281])
    return devproc.tokenize_decode(greedy, tok), greedy, after, sampled, stopped


@devproc.kernel
def vlm_pipeline(path: devproc.String, prompt: devproc.Tensor[devproc.Int32, 2], tower: devproc.TorchModel,
                 llm: devproc.TorchModel, table: devproc.Tensor):
    img = devproc.resize(devproc.load_image(path), [vlm.IMAGE_SIZE, vlm.IMAGE_SIZE])
    image_embeds = tower(devproc.normalize(img, list(vlm.MEAN), list(vlm.STD)))
    x = devproc.concat([image_embeds, devproc.embed(prompt, table)], dim=1)
    return devproc.decode_loop(llm, x, devproc.KVCache(), max_new_tokens=5, embedding=table)


@devproc.kernel
def displaced(path: devproc.String, prompt: devproc.Tensor[devproc.Int32, 2], tower: devproc.TorchModel,
              llm: devproc.TorchModel, table: devproc.Tensor):
    cache = devproc.KVCache()
    first = devproc.prefill(llm, devproc.embed(prompt, table), cache)
    img = devproc.resize(devproc.load_image(path), [vlm.IMAGE_SIZE, vlm.IMAGE_SIZE])
    feats = tower(devproc.normalize(img, list(vlm.MEAN), list(vlm.STD)))
    tok = devproc.to(devproc.argmax(first, keepdim=True), devproc.Int32)
    nxt = devproc.decode(llm, devproc.embed(tok, table), cache)
    return nxt, feats


@pytest.fixture(scope="module")
def tok_path():
    return textgen.tokenizer_path()


@pytest.fixture(scope="module")
def libs(tmp_path_factory, tok_path):
    """The saved pipelines with their C++ programs built (release)."""
    d = tmp_path_factory.mktemp("libs")
    tok = devproc.load_tokenizer(tok_path)
    out = {}
    model, example = classifier.build()
    cnn = devproc.load_torch_model(model, example, ({},), name="cnn")
    out["classify"] = devproc.compile(classify, (devproc.input("path", devproc.String), cnn)).save(d / "classify")
    tiny = devproc.load_torch_model(TinyLM().eval(), (torch.zeros(1, 4, dtype=torch.long),),
                                    ({1: torch.export.Dim("seq", min=1, max=32)},), name="tinylm")
    table = devproc.const(np.random.default_rng(4).standard_normal((512, 8)).astype(np.float32), "table")
    out["text"] = devproc.compile(text, (devproc.input("prompt", devproc.String), tok, tiny, table)).save(d / "text")
    from dlavm.models.builtin import CausalLMLogits
    llama, _ = textgen.build(64)
    lm = devproc.load_torch_model(CausalLMLogits(llama).eval(), (torch.zeros(1, 8, dtype=torch.long),),
                                  ({1: torch.export.Dim("seq", min=1, max=64)},), max_seq=64, name="tl")
    out["generate"] = devproc.compile(generate, (devproc.input("prompt", devproc.String), tok, lm)).save(d / "generate")
    tower_m, llm_m = vlm.build()
    tower = devproc.load_torch_model(tower_m, vlm.vision_example(), ({},), name="vit")
    llm = devproc.load_torch_model(llm_m, vlm.llm_example(), vlm.llm_dynamic_shapes(), max_seq=vlm.MAX_SEQ,
                                   name="embedslm")
    etable = devproc.const(vlm.embedding_table(), "etable")
    vargs = (devproc.input("path", devproc.String), devproc.input("prompt", devproc.Tensor[devproc.Int32, 2]), tower,
             llm, etable)
    out["vlm"] = devproc.compile(vlm_pipeline, vargs).save(d / "vlm")
    out["displaced"] = devproc.compile(displaced, vargs).save(d / "displaced")
    exes = {k: build_cpp(v) for k, v in out.items()}
    return {k: (Path(v), exes[k]) for k, v in out.items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image
    d = tmp_path_factory.mktemp("images")
    paths = []
    for k, (label, size) in enumerate([(0, (32, 32)), (1, (48, 40)), (2, (27, 33)), (3, (64, 64)), (2, (1, 1)),
                                       (0, (17, 90))]):
        img = classifier.synthetic_image(label, 100 + k, *size)
        p = d / f"img{k}.{'ppm' if k == 3 else 'png'}"
        Image.fromarray(img).convert("RGBA" if k == 1 else "L" if k == 5 else "RGB").save(p)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- same outputs

def test_classifier_pipeline(libs, server, images, tmp_path):
    lib, exe = libs["classify"]
    classes = set()
    for k, p in enumerate(images):
        out = tmp_path / f"o{k}"
        run_cpp(exe, lib, out, {"path": p}, [server.uri])
        got = cpp_outputs(out)
        assert_same(got, python_outputs(lib, {"path": str(p)}))
        classes.add(int(got[0][0]))
        assert python_cli(lib, tmp_path / f"py{k}", {"path": p})[0] == 0
        assert_same_files(out, tmp_path / f"py{k}")
    assert len(classes) >= 2   # a classifier that tells images apart


def test_text_pipeline(libs, server, tmp_path, tok_path):
    lib, exe = libs["text"]
    prompts = ["hello world", "The compiler maps each layer to the device.", "a", "café 😀 naïve"]
    for k, prompt in enumerate(prompts):
        out = tmp_path / f"o{k}"
        run_cpp(exe, lib, out, {"prompt": prompt}, [server.uri])
        assert_same(cpp_outputs(out), python_outputs(lib, {"prompt": prompt}))
    # the prompt from a file
    (tmp_path / "prompt.txt").write_bytes("from a file\r\nwith three\rlines é".encode())
    run_cpp(exe, lib, tmp_path / "of", {"prompt": f"@{tmp_path / 'prompt.txt'}"}, [server.uri])
    assert_same(cpp_outputs(tmp_path / "of"), python_outputs(lib, {"prompt": "from a file\nwith three\nlines é"}))
    assert python_cli(lib, tmp_path / "pf", {"prompt": f"@{tmp_path / 'prompt.txt'}"})[0] == 0
    assert_same_files(tmp_path / "of", tmp_path / "pf")


def test_llm_decode_loop_greedy_sampled_and_decode_after(libs, server, tmp_path):
    lib, exe = libs["generate"]
    for k, prompt in enumerate(textgen.PROMPTS):
        out = tmp_path / f"o{k}"
        run_cpp(exe, lib, out, {"prompt": prompt}, [f"lm={server.uri}"])
        got, want = cpp_outputs(out), python_outputs(lib, {"prompt": prompt})
        assert_same(got, want)
        g = json.loads((out / "outputs.json").read_text())
        shapes = [r["shape"] for r in g]
        assert shapes[1] == [1, 6] and shapes[3] == [1, 8] and shapes[2] == [1, textgen.VOCAB]
    # the greedy tokens are torch's (HF's KV cache, the weights the device uses)
    model, _ = textgen.build(64)
    ids = devproc.load_tokenizer(textgen.tokenizer_path()).tokenizer.encode(textgen.PROMPTS[0])
    ref = textgen.reference_generate(model, ids, 6)
    assert cpp_outputs(tmp_path / "o0")[1].reshape(-1).tolist() == ref


def test_embeddings_decode_loop_on_a_shared_device(libs, server, images, tmp_path):
    """The vision tower and the LLM share one device: each one's weights are loaded again when it runs after
    the other; the LLM's input is the image's embeddings joined with the prompt's, then the table's rows."""
    lib, exe = libs["vlm"]
    prompt = np.array([[5, 17, 42]], np.int32)
    np.save(tmp_path / "prompt.npy", prompt)
    for k in (0, 2):
        out = tmp_path / f"o{k}"
        run_cpp(exe, lib, out, {"path": images[k], "prompt": f"@{tmp_path / 'prompt.npy'}"}, [server.uri])
        got = cpp_outputs(out)
        assert_same(got, python_outputs(lib, {"path": str(images[k]), "prompt": prompt}, device=server.uri))
        toks = got[0].reshape(-1).tolist()
        assert toks == vlm.reference_generate(images[k], prompt.reshape(-1).tolist(), 5)


def test_a_displaced_kv_cache_is_refused_on_a_shared_device(libs, server, server2, images, tmp_path):
    lib, exe = libs["displaced"]
    prompt = np.array([[5, 17]], np.int32)
    np.save(tmp_path / "prompt.npy", prompt)
    inputs = {"path": images[0], "prompt": f"@{tmp_path / 'prompt.npy'}"}
    res = run_cpp(exe, lib, tmp_path / "o", inputs, [server.uri], check_rc=1)
    line = error_line(res)
    assert line.endswith("decode: the KV cache of 'llm' was overwritten by model 'tower' on the same device "
                         "since its last use"), line
    with pytest.raises(devproc.DevprocError, match="KV cache of 'llm' was overwritten"):
        python_outputs(lib, {"path": str(images[0]), "prompt": prompt}, device=server.uri)
    # each model on its own device: it runs, with the Python runtime's outputs
    run_cpp(exe, lib, tmp_path / "o2", inputs, [server.uri, f"tower={server2.uri}"])
    assert_same(cpp_outputs(tmp_path / "o2"), python_outputs(lib, {"path": str(images[0]), "prompt": prompt}))


def test_sanitizer_flavour(libs, server, tmp_path):
    lib, _ = libs["text"]
    exe = build_cpp(lib, sanitize=True)
    assert exe.name == "pipeline-asan"
    run_cpp(exe, lib, tmp_path / "o", {"prompt": "hello sanitizers"}, [server.uri])
    assert_same(cpp_outputs(tmp_path / "o"), python_outputs(lib, {"prompt": "hello sanitizers"}))
    res = run_cpp(exe, lib, tmp_path / "o", {"prompt": "x"}, [], check_rc=2)
    assert "has no device" in error_line(res)
    lib, _ = libs["generate"]      # the LLM ops: decode_loop greedy, sampled, stopped at EOS; prefill, decode
    exe = build_cpp(lib, sanitize=True)
    run_cpp(exe, lib, tmp_path / "g", {"prompt": "hello world"}, [server.uri])
    assert_same(cpp_outputs(tmp_path / "g"), python_outputs(lib, {"prompt": "hello world"}))


@devproc.kernel
def host_only(img: devproc.Image, x: devproc.Tensor[devproc.Float16, 3]):
    small = devproc.resize(img, [9, 4], method="bicubic")
    n = devproc.normalize(small, [0.5, 0.25, 0.125], [0.2, 0.3, 0.4])
    y = devproc.l2_normalize(devproc.to(x, devproc.Float32), dim=1, eps=1e-3)
    return small, n, devproc.argmax(y, dim=0), devproc.unsqueeze(y, -1)


def test_a_host_only_pipeline_with_image_and_tensor_inputs(tmp_path, images):
    """No model, so no device: an Image input given as a PNG file or a .npy array, a float16 tensor input."""
    from PIL import Image
    lib = devproc.compile(host_only, (devproc.input("img", devproc.Image),
                                      devproc.input("x", devproc.Tensor[devproc.Float16, 3]))).save(tmp_path / "lib")
    exe = build_cpp(lib)
    x = np.random.default_rng(5).standard_normal((2, 3, 4)).astype(np.float16)
    x[0, 0, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    for k, p in enumerate(images[:3]):
        arr = np.asarray(Image.open(p).convert("RGB"))
        np.save(tmp_path / f"img{k}.npy", arr)
        for given in (p, tmp_path / f"img{k}.npy"):
            out = tmp_path / f"o{k}_{given.suffix}"
            run_cpp(exe, lib, out, {"img": f"@{given}", "x": f"@{tmp_path / 'x.npy'}"})
            assert_same(cpp_outputs(out), python_outputs(lib, {"img": arr, "x": x}))
    np.save(tmp_path / "grey.npy", np.zeros((4, 4), np.uint8))
    res = run_cpp(exe, lib, tmp_path / "o", {"img": f"@{tmp_path / 'grey.npy'}", "x": f"@{tmp_path / 'x.npy'}"},
                  check_rc=1)
    assert error_line(res) == "error: input 'img' must be an image: uint8 [H, W, 3], got uint8 [4, 4]"


@pytest.fixture(scope="module")
def server_vcu128(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("server_vcu128"), "vcu128")
    yield s
    s.stop()


def test_the_four_pipelines_of_the_guide_write_the_files_python_writes(server, server_vcu128, tmp_path):
    """examples/devproc/pipelines.py (doc/devproc.md's guide): sentence embeddings with the real MiniLM
    (WordPiece, [CLS] ... [SEP], vcu128), text generation, describe_image (an LLM on embeddings) and the
    classifier, each run by its C++ program and by ``python -m devproc.runtime`` on the same device: the same
    output folders, byte for byte."""
    from examples.devproc import minilm
    from examples.devproc import pipelines as P
    images = [str(p) for p, _ in classifier.write_images(tmp_path / "images", 3)]
    text_in = devproc.input("text", devproc.String)
    prompt_in = devproc.input("prompt", devproc.String)
    image_in = devproc.input("image", devproc.String)
    cases = [
        (P.sentence_embedding, (text_in, *P.minilm_constants()), minilm.TARGET, server_vcu128,
         [{"text": s} for s in minilm.SENTENCES[:6]]),
        (P.text_generation, (prompt_in, *P.textgen_constants(), 10), "tiny", server,
         [{"prompt": p} for p in textgen.PROMPTS]),
        (P.describe_image, (image_in, prompt_in, *P.vlm_constants(), 6), "tiny", server,
         [{"image": images[0], "prompt": "A picture of"}, {"image": images[2], "prompt": "hello"}]),
        (P.classify, (image_in, *P.classifier_constants()), "tiny", server, [{"image": p} for p in images]),
    ]
    for kernel, args, target, srv, runs in cases:
        lib = devproc.compile(kernel, args, target=target).save(tmp_path / kernel.name)
        exe = build_cpp(lib)
        for k, inputs in enumerate(runs):
            cpp_out, py_out = tmp_path / f"{kernel.name}_cpp{k}", tmp_path / f"{kernel.name}_py{k}"
            run_cpp(exe, lib, cpp_out, inputs, [srv.uri])
            assert python_cli(lib, py_out, inputs, [srv.uri]) == (0, "")
            assert_same_files(cpp_out, py_out)


# ----------------------------------------------------------------------------- refusals

def test_bad_command_lines_and_inputs_are_one_line_errors(libs, server, images, tmp_path):
    """Each refusal is one line and exit code 1 (2 for a usage error); where python -m devproc.runtime refuses
    the same input, it does in the same words."""
    lib, exe = libs["vlm"]
    np.save(tmp_path / "ok.npy", np.array([[5, 17]], np.int32))
    np.save(tmp_path / "f32.npy", np.array([[5, 17]], np.float32))
    np.save(tmp_path / "rank1.npy", np.array([5, 17], np.int32))
    np.save(tmp_path / "big.npy", np.array([[5, 4096]], np.int32))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    ok = {"path": images[0], "prompt": f"@{tmp_path / 'ok.npy'}"}
    t = "Tensor[devproc.Int32, rank 2]"
    same = [   # (inputs, the error line of both)
        ({"path": images[0]}, f"pipeline 'vlm_pipeline': input 'prompt' ({t}) is missing"),
        ({**ok, "other": "x"}, "--input other: the pipeline has no input 'other' (inputs: path, prompt)"),
        ({**ok, "prompt": f"@{tmp_path / 'f32.npy'}"}, f"input 'prompt' must be {t}, got float32 of rank 2"),
        ({**ok, "prompt": f"@{tmp_path / 'rank1.npy'}"}, f"input 'prompt' must be {t}, got int32 of rank 1"),
        ({**ok, "prompt": "5 17"}, f"--input prompt: a {t} input is given as prompt=@FILE"),
        ({**ok, "prompt": f"@{tmp_path / 'missing.npy'}"},
         f"--input prompt: cannot read {tmp_path / 'missing.npy'} (No such file or directory)"),
        ({**ok, "prompt": f"@{tmp_path / 'big.npy'}"}, None),   # a node's error: its kernel line and op
    ]
    for inputs, words in same:
        res = run_cpp(exe, lib, tmp_path / "o", inputs, [server.uri], check_rc=1)
        rc, err = python_cli(lib, tmp_path / "p", inputs, [server.uri])
        assert rc == 1 and len(err.strip().splitlines()) == 1 and len(res.stderr.strip().splitlines()) == 1
        assert error_line(res) == err.strip(), inputs
        if words is not None:
            assert error_line(res) == f"error: {words}"
        else:
            assert "embed: embed: id 4096 is outside the table's 512 rows" in error_line(res)
    only_cpp = [
        (2, [], ok, "model 'tower' has no device"),
        (2, [server.uri, "nosuch=" + server.uri], ok, "the pipeline has no model of that name"),
        (1, [server.uri], {**ok, "path": tmp_path / "missing.png"}, "load_image"),
        (1, [server.uri], {**ok, "path": tmp_path / "bad.png"}, "load_image"),
        (1, ["sim://127.0.0.1:1"], ok, "ConnectionError"),
    ]
    for rc, devices, inputs, words in only_cpp:
        res = run_cpp(exe, lib, tmp_path / "o", inputs, devices, check_rc=rc)
        assert words in error_line(res), (words, res.stderr)
        if rc == 1:
            assert len(res.stderr.strip().splitlines()) == 1
    for argv in (["--bogus"], [str(lib)], [str(lib), str(lib), "--out", "x"], [str(lib), "--out"]):
        r = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and "usage: pipeline DIR" in r.stderr, argv


def test_a_changed_constant_or_artifact_file_is_refused(libs, server, tmp_path):
    import shutil
    src, exe = libs["text"]
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    run_cpp(exe, lib, tmp_path / "o", {"prompt": "hi"}, [server.uri])
    table = lib / "consts" / "table.bin"
    data = bytearray(table.read_bytes())
    data[5] ^= 1
    table.write_bytes(bytes(data))
    line = error_line(run_cpp(exe, lib, tmp_path / "o", {"prompt": "hi"}, [server.uri], check_rc=1))
    assert 'file "consts/table.bin" has sha256' in line and "pipeline.json records" in line, line
    table.write_bytes(bytes(data) + b"\x00")
    line = error_line(run_cpp(exe, lib, tmp_path / "o", {"prompt": "hi"}, [server.uri], check_rc=1))
    assert "holds 16385 bytes, pipeline.json records 16384" in line, line
    table.unlink()
    table.symlink_to(src / "consts" / "table.bin")
    line = error_line(run_cpp(exe, lib, tmp_path / "o", {"prompt": "hi"}, [server.uri], check_rc=1))
    assert "symbolic link" in line, line
    shutil.copy(src / "consts" / "table.bin", tmp_path / "t.bin")
    table.unlink()
    shutil.copy(tmp_path / "t.bin", table)
    w = next((lib / "models" / "lm" / "weights").iterdir())
    w.write_bytes(w.read_bytes()[:-2] + b"\xff\xff")
    line = error_line(run_cpp(exe, lib, tmp_path / "o", {"prompt": "hi"}, [server.uri], check_rc=1))
    assert "artifact" in line and "sha256" in line, line


# ----------------------------------------------------------------------------- the generator

def test_generated_program_is_straight_line_and_names_each_node(libs):
    lib, _ = libs["text"]
    src = generate_cpp(lib)
    assert src == (lib / "host" / "pipeline.cc").read_text()
    g = json.loads((lib / "pipeline.json").read_text())
    for k, n in enumerate(g["nodes"]):
        assert f"// nodes[{k}]: {n['op']} ({n['loc']})" in src
    assert "for (" not in src.split("void run(")[1]   # no interpreter loop: one call per node
    size = (lib / "consts" / "table.bin").stat().st_size
    sha = hashlib.sha256((lib / "consts" / "table.bin").read_bytes()).hexdigest()
    assert f'"consts/table.bin", {size}ull, "{sha}"' in src


def test_cpp_string_literals():
    text = 'a"b\\c\n\x00é😀?1'
    src = f'#include <cstdio>\nint main() {{ const char s[] = {cpp_str(text)}; fwrite(s, 1, sizeof s - 1, stdout); }}\n'
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "s.cc").write_text(src)
        subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", str(Path(d) / "s.cc"), "-o", str(Path(d) / "s")],
                       check=True)
        assert subprocess.run([str(Path(d) / "s")], capture_output=True, check=True).stdout == text.encode()


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 5)

    def forward(self, x):
        return self.lin(x)


@devproc.kernel
def linear(x: devproc.Tensor[devproc.Float32, 2], m: devproc.TorchModel):
    return m(x)


def test_a_model_without_a_driver_is_refused_by_the_generator(tmp_path):
    import shutil
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = devproc.load_torch_model(Lin().eval(), (torch.zeros(1, 8),), ({},))
    library = devproc.compile(linear, (devproc.input("x", devproc.Tensor[devproc.Float32, 2]), m))
    lib = library.save(tmp_path / "lib")
    assert (lib / "host" / "pipeline.cc").read_text() == generate_cpp(lib)
    shutil.rmtree(lib / "models" / "m")
    library.models["m"].save(lib / "models" / "m", driver=False)     # a model only Python can run
    with pytest.raises(devproc.DevprocError, match="model 'm': its artifact has no C.. driver"):
        generate_cpp(lib)


@devproc.kernel
def two_linears(x: devproc.Tensor[devproc.Float32, 2], a: devproc.TorchModel, b: devproc.TorchModel):
    return a(x), b(x)


def test_two_models_whose_drivers_share_a_name_are_refused(tmp_path):
    a = devproc.load_torch_model(Lin().eval(), (torch.zeros(1, 8),), ({},), name="lin")
    b = devproc.load_torch_model(Lin().eval(), (torch.zeros(1, 8),), ({},), name="lin")
    lib = devproc.compile(two_linears, (devproc.input("x", devproc.Tensor[devproc.Float32, 2]), a, b)).save(
        tmp_path / "lib")
    assert not (lib / "host" / "pipeline.cc").exists()
    with pytest.raises(devproc.DevprocError, match="models 'a' and 'b' have drivers of one name .dlavm_lin."):
        build_cpp(lib)
