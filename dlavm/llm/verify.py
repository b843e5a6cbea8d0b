"""``dlavm generate --verify``: the device's logits at every step of a generation, compared with torch.

Teacher-forced: torch runs the model once on the prompt followed by the generated tokens (no cache), so
at every step it sees exactly the history the device saw, and row ``len(prompt) - 1 + i`` of its logits
is the prediction of step ``i``. Two references:

* ``same weights``: the model with the weights the device computes with (``quantized_torch_model``:
  fake-quantised mvm weights, the host embedding table at its stored precision), so what remains is the
  device's fp16 arithmetic: errors of the order of 1e-3 of the logits' scale;
* ``fp32``: the model as given, so the error includes the quantisation.

At a step where the argmax differs, torch's top-2 margin (its best logit minus the second) tells a
near-tie (margin below the step's logits error: fp16 rounding may flip it) from a real disagreement.
The torch model is rebuilt from MODEL (a recipe, ``hf:DIR`` or ``file.py:factory``) through the same
import and device pipeline as the compilation, with the artifact's weight format and target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class VerifyError(ValueError):
    """The torch reference cannot be built for this artifact (another model, no weights)."""


@dataclass
class StepCheck:
    """One step against one reference."""

    step: int
    max_abs_err: float
    device_argmax: int
    torch_argmax: int
    margin: float          # torch's top-1 minus top-2 logit

    @property
    def diverges(self) -> bool:
        return self.device_argmax != self.torch_argmax

    @property
    def near_tie(self) -> bool:
        return self.margin <= self.max_abs_err


@dataclass
class Comparison:
    """Every step against one reference (``name``: ``same weights`` or ``fp32``)."""

    name: str
    steps: list = field(default_factory=list)
    scale: float = 0.0     # max |logits| of torch over all steps

    @property
    def divergences(self) -> list:
        return [s for s in self.steps if s.diverges]

    @property
    def real_divergences(self) -> list:
        """Divergences that are not near-ties."""
        return [s for s in self.divergences if not s.near_tie]

    def summary(self) -> str:
        n, errs = len(self.steps), [s.max_abs_err for s in self.steps]
        worst = int(np.argmax(errs))
        line = (f"{self.name}: argmax equal at {n - len(self.divergences)}/{n} steps; max |logits error| "
                f"{errs[worst]:.3g} at step {worst} (logits scale {self.scale:.3g})")
        for s in self.divergences[:3]:
            verdict = ("a near-tie: margin <= error" if s.near_tie else "NOT a near-tie: margin > error")
            line += (f"; step {s.step}: device {s.device_argmax}, torch {s.torch_argmax}, torch top-2 margin "
                     f"{s.margin:.3g} vs error {s.max_abs_err:.3g} ({verdict})")
        if len(self.divergences) > 3:
            line += f"; {len(self.divergences) - 3} more divergences"
        return line


def compare(device_logits: list, torch_logits: np.ndarray, name: str) -> Comparison:
    """``device_logits[i]`` (float32 [vocab]) against ``torch_logits[i]`` for every step."""
    out = Comparison(name, scale=float(np.abs(torch_logits).max()) if len(torch_logits) else 0.0)
    for i, (d, t) in enumerate(zip(device_logits, torch_logits)):
        d, t = np.asarray(d, np.float32), np.asarray(t, np.float32)
        top2 = np.sort(t)[-2:]
        out.steps.append(StepCheck(i, float(np.abs(d - t).max()), int(np.argmax(d)), int(np.argmax(t)),
                                   float(top2[1] - top2[0])))
    return out


def torch_models(model: str, manifest, tables: dict):
    """``(same-weights model, fp32 model)``: HF causal LMs of ``model`` (a MODEL spec) for the artifact of
    ``manifest``, the first with the device's weights and the host embedding ``tables`` (name -> the
    float32 table the artifact's host reads, ``dlavm.llm.reference.host_tables``). Refuses a model whose
    vocabulary differs from the artifact's."""
    from dlavm.models import import_model

    from .compile import llm_module
    from .reference import quantized_torch_model
    res = import_model(model, max_seq=manifest.llm.max_ctx)
    if res.spec.shape_only:
        raise VerifyError(f"model '{model}' has no weights (shape-only): there is nothing to verify against")
    wrapper = res.spec.module
    vocab = manifest.llm.vocab
    got = getattr(getattr(getattr(wrapper, "model", None), "config", None), "vocab_size", None)
    if got is None:
        raise VerifyError(f"model '{model}' is not a causal LM with a config (input_ids -> .logits)")
    if got != vocab:
        raise VerifyError(f"model '{model}' has a vocabulary of {got} tokens, the artifact's has {vocab}: "
                          f"give the MODEL the artifact was compiled from (--model)")
    dev, _ = llm_module(res.module, manifest.weights_format, manifest.llm.max_ctx, target=manifest.target.load())
    tables = {k: v for k, v in tables.items() if k in res.module.params}
    return quantized_torch_model(wrapper, dev, res.module.params, tables), wrapper.model.eval()


def torch_step_logits(model, prompt: list, tokens: list) -> np.ndarray:
    """float32 ``[len(tokens), vocab]``: torch's logits predicting each of ``tokens`` (teacher-forced)."""
    import torch
    ids = torch.tensor([list(prompt) + list(tokens[:-1])])
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=False).logits[0]
    return out[len(prompt) - 1:].float().numpy()


def verify(model: str, cm, prompt: list, tokens: list, device_logits: list) -> list:
    """``[Comparison vs same weights, Comparison vs fp32]`` of a generation of the compiled model ``cm``
    (module docstring)."""
    from .reference import host_tables
    same, fp32 = torch_models(model, cm.manifest, host_tables(cm))
    return [compare(device_logits, torch_step_logits(same, prompt, tokens), "same quantised weights"),
            compare(device_logits, torch_step_logits(fp32, prompt, tokens), "fp32 weights")]


def format_steps(comparisons: list) -> str:
    """A table: per step, each reference's max |error| and whether its argmax agrees."""
    head = "step  " + "  ".join(f"{c.name[:22]:>22} err  argmax" for c in comparisons)
    lines = [head]
    for i in range(len(comparisons[0].steps)):
        cells = []
        for c in comparisons:
            s = c.steps[i]
            cells.append(f"{s.max_abs_err:>26.3g}  " + ("  same" if not s.diverges else
                                                          f"{s.device_argmax}/{s.torch_argmax}"
                                                          + (" tie" if s.near_tie else " !")))
        lines.append(f"{i:>4}  " + "  ".join(cells))
    return "\n".join(lines)


__all__ = ["verify", "compare", "Comparison", "StepCheck", "VerifyError", "torch_models", "torch_step_logits",
           "format_steps"]
