"""Run a compiled model (an artifact's manifest and files) on a :class:`DeviceHAL`.

Needs numpy, ``dlavm.target``, ``dlavm.artifact`` (the typed manifest) and
``dlavm.runtime`` only: no torch, no compiler, no simulator import (the caller passes the HAL; see
:func:`dlavm.sim_device.open_simulator` for the simulator).

What :meth:`Runtime.run` guarantees:

* dynamic dims are bound from the input shapes and checked against their
  bounds (:class:`BoundsError` names the input, dim and bounds);
* every AUX stream is patched for those dims (dynamic fields rewritten,
  guarded entries whose condition is false turned into ``nop``), only the
  64-byte entries that changed since the stream was last written are
  re-written to the device, and the stream is started and waited for; a
  loop of the stream that runs n > 1 times is re-launched, its body
  re-patched for each iteration (:meth:`Runtime.launches`);
* host-fallback ops run with numpy (:mod:`dlavm.runtime.host_kernels`);
* outputs are numpy arrays of the entry's output dtypes.

``mode="direct"`` pushes every (patched) instruction through the INSN
staging registers instead of the AUX sequencer (debugging; 17 register
writes per instruction).
"""
from __future__ import annotations

import re
import struct
import time
from typing import Callable, Mapping

import numpy as np

from dlavm.artifact import (ConstRef, ExprError, HostStep, LiteralOperand, Manifest, ToDeviceStep, ToHostStep,
                            ValueInfo, eval_expr)
from dlavm.devlink.hal import DeviceHAL
from dlavm.runtime.host_kernels import HostOpError, host_ops_of, require_kernels, run_host_op
from dlavm.target.isa import ARGMAX_RECORD_BYTES, INSN_BYTES, INSN_WORDS, WAIT_UNITS, op_format, wait_bits

_ADDRESS_UNIT = 32
_NOP = op_format("nop").opcode
_WAIT_ALL = wait_bits(WAIT_UNITS)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RunError(RuntimeError):
    """A compiled model cannot run these inputs (wrong count, rank or shape; a value past its field)."""


class BoundsError(RunError, ValueError):
    """An input's dynamic dim is outside the bounds the model was compiled for."""


class Runtime:
    """A loaded model: weights preloaded on ``hal``; :meth:`run` executes an entry."""

    def __init__(self, manifest: Manifest, read_file: Callable[[str], bytes], hal: DeviceHAL, mode: str = "aux",
                 timing_only: bool = False, serial: bool = False):
        if mode not in ("aux", "direct"):
            raise ValueError(f"mode must be 'aux' or 'direct', got {mode!r}")
        if not isinstance(manifest, Manifest):
            raise TypeError(f"Runtime needs a dlavm.artifact.Manifest (read_manifest / open_artifact), "
                            f"got {type(manifest).__name__}")
        if not manifest.weights_complete and not timing_only:
            raise RunError("this model was compiled without weight data (shape-only): it can only be "
                                "run for timing (timing_only=True on a timing-only simulator)")
        if not timing_only:  # a host op this process cannot run is refused now, not mid-run
            try:
                require_kernels(host_ops_of(manifest))
            except HostOpError as e:
                raise RunError(str(e)) from None
        device_target = hal.stats().get("target")
        if device_target is not None and device_target != manifest.target.name:
            raise RunError(f"the artifact was compiled for target '{manifest.target.name}' but the device "
                           f"implements '{device_target}'")
        self.manifest, self.hal, self.mode, self.timing_only = manifest, hal, mode, timing_only
        #: every instruction waits for every unit (runs with the others idle): the same results, no overlap;
        #: a debugging aid and how each instruction's cycles are measured alone (doc/runtime.md)
        self.serial = bool(serial)
        #: (stream name, index of the launch's first instruction in the device's issue order, first entry,
        #: one past its last entry) per launch of a stream (a stream with a loop of n > 1 trips is launched
        #: several times per run, :meth:`launches`)
        self.stream_log: list = []
        self.host_log: list = []
        self._streams = {n: bytes(read_file(s.file)) for n, s in manifest.streams.items()}
        self._written: dict = {}
        #: [start, end) of the pools device values may occupy (activations of every function, the KV cache)
        self._value_pools = [(p.base, p.base + p.used) for n, p in manifest.memory.items()
                             if n == "kv" or n.startswith("activations.")]
        self.host_consts = {}
        for c in manifest.host_consts:
            dt = np.dtype(c.dtype).newbyteorder("<")
            raw = read_file(c.file)
            if c.quant is not None:   # stored int8 / int4 with scales: float32 from here on
                from dlavm.runtime.host_quant import dequantise
                self.host_consts[c.name] = dequantise(raw, read_file(c.quant.scales), c.quant.format,
                                                      c.quant.group, c.shape)
                continue
            if len(raw) != dt.itemsize * int(np.prod(c.shape, dtype=np.int64)):
                raise RunError(f"host constant '{c.name}': {c.file} holds {len(raw)} bytes, not a {c.dtype} "
                               f"array of shape {list(c.shape)}")
            self.host_consts[c.name] = np.frombuffer(raw, dtype=dt).reshape(c.shape)
        self._read_file = read_file
        self.load_weights()
        #: device cycles, HBM bytes and MACs of the most recent :meth:`run`
        self.last_cycles = 0
        self.last_hbm_bytes = 0
        self.last_macs = 0

    def load_weights(self) -> None:
        """Copy the packed weights to their device addresses (done once by the constructor; again after
        another model used the same device)."""
        for w in self.manifest.weights:
            self.hal.write_mem(w.addr, self._read_file(w.file))

    @property
    def entries(self) -> list:
        return list(self.manifest.entries)

    # --- dims ---------------------------------------------------------------------------------
    def bind_dims(self, entry: str, inputs, state: Mapping[str, int] | None = None) -> dict:
        """Dim values from input shapes plus the entry's *state dims* given in ``state`` (dims no input
        carries, e.g. an LLM's KV length ``ctx``), checked against bounds, every input dim and the
        entry's ``requires`` conditions."""
        if entry not in self.manifest.entries:
            raise RunError(f"no entry '{entry}'; entries are {self.entries}")
        fn = self.manifest.entries[entry]
        dims = self.manifest.dims
        if len(inputs) != len(fn.inputs):
            names = ", ".join(i.name for i in fn.inputs)
            raise RunError(f"entry '{entry}' takes {len(fn.inputs)} inputs ({names}), got {len(inputs)}")
        env: dict = {}
        for spec, x in zip(fn.inputs, inputs):
            shape = np.shape(x)
            if len(shape) != len(spec.shape):
                raise RunError(f"input '{spec.name}' must have rank {len(spec.shape)} "
                               f"(shape [{', '.join(spec.shape)}]), got shape {tuple(shape)}")
            for d, n in zip(spec.shape, shape):
                if _IDENT.match(d) and d not in env:
                    b = dims[d]
                    if n < b.lo or n > b.hi:
                        raise BoundsError(f"input '{spec.name}': dim {d}={n} is outside the bounds "
                                          f"[{b.lo}, {b.hi}] the model was compiled for")
                    env[d] = int(n)
        state = dict(state or {})
        for d in fn.state_dims:
            if d not in state:
                raise RunError(f"entry '{entry}' needs the state dim '{d}' (pass dims={{'{d}': ...}})")
            b = dims[d]
            if not b.lo <= int(state[d]) <= b.hi:
                raise BoundsError(f"dim {d}={state[d]} is outside the bounds [{b.lo}, {b.hi}] the model was "
                                  f"compiled for")
            env[d] = int(state[d])
        unknown = set(state) - set(fn.state_dims)
        if unknown:
            raise RunError(f"entry '{entry}' has no state dim(s) {sorted(unknown)}")
        for cond in fn.requires:
            if not _eval(cond, env):
                raise BoundsError(f"entry '{entry}': {cond} does not hold for dims {env}")
        for spec, x in zip(fn.inputs, inputs):
            for i, (d, n) in enumerate(zip(spec.shape, np.shape(x))):
                want = _eval(d, env)
                if want != n:
                    raise RunError(f"input '{spec.name}' dim {i} must be {d} = {want}, got {n}")
        return env

    # --- execution ----------------------------------------------------------------------------
    def run(self, entry: str, *inputs, dims: Mapping[str, int] | None = None) -> list:
        """Outputs of ``entry`` for ``inputs`` (numpy arrays), see the module guarantees; ``dims``
        gives the entry's state dims (doc/llm.md)."""
        env = self.bind_dims(entry, inputs, dims)  # refuses an unknown entry
        fn = self.manifest.entries[entry]
        self.stream_log = []
        #: ``(op, dst, start_s, seconds)`` of each host-fallback step of this run (wall clock from its start)
        self.host_log = []
        t_run = time.perf_counter()
        vals: dict = {spec.value: np.asarray(x) for spec, x in zip(fn.inputs, inputs)}
        values = fn.values
        start = self.hal.stats()
        for step in fn.steps:
            if isinstance(step, ToDeviceStep):
                with np.errstate(over="ignore"):   # IEEE rounding: past fp16's range is +-inf (doc/isa.md 1)
                    x = np.asarray(self._operand(step.src, vals), dtype=np.float32).astype(np.float16)
                self._check_span(step.dst, values[step.dst], x.nbytes)
                self.hal.write_mem(values[step.dst].addr, x.tobytes())
            elif isinstance(step, ToHostStep):
                vals[step.dst] = self._read(step.src, values[step.src], env, step.dtype)
            elif isinstance(step, HostStep) and self.timing_only:  # shape-only: values do not matter
                v = values[step.dst]
                vals[step.dst] = np.zeros([_eval(d, env) for d in v.shape], dtype=v.dtype)
            elif isinstance(step, HostStep):
                args = [self._operand(a, vals) for a in step.args]
                attrs = {k: self._attr(v, env) for k, v in step.attrs.items()}
                t0 = time.perf_counter()
                vals[step.dst] = _host_op(entry, step, args, attrs, values[step.dst])
                self.host_log.append((step.op, step.dst, t0 - t_run, time.perf_counter() - t0))
            else:
                self._run_stream(step.stream, env)
        end = self.hal.stats()
        self.last_cycles = end.get("cycles", 0) - start.get("cycles", 0)
        self.last_hbm_bytes = end.get("hbm_bytes", 0) - start.get("hbm_bytes", 0)
        self.last_macs = end.get("macs", 0) - start.get("macs", 0)
        return [vals[o.value] for o in fn.outputs]

    def _operand(self, ref, vals: dict):
        if isinstance(ref, LiteralOperand):
            return ref.literal
        if isinstance(ref, ConstRef):
            if ref.const not in self.host_consts:
                raise RunError(f"host constant '{ref.const}' has no data in this artifact (shape-only)")
            return self.host_consts[ref.const]
        return vals[ref.value]

    def _attr(self, v, env):
        if isinstance(v, dict) and set(v) == {"sym"}:
            return _eval(v["sym"], env)
        if isinstance(v, list):
            return [self._attr(x, env) for x in v]
        return v

    def _check_span(self, vid: str, value: ValueInfo, nbytes: int) -> None:
        """A device value of ``nbytes`` at its address lies inside one pool of device values."""
        a = value.addr
        if not any(lo <= a and a + nbytes <= hi for lo, hi in self._value_pools):
            raise RunError(f"device value '{vid}': {nbytes} bytes at {a} do not fit the activations or kv pool "
                           f"that holds its address")

    def _read(self, vid: str, value: ValueInfo, env: dict, dtype: str) -> np.ndarray:
        shape = tuple(_eval(d, env) for d in value.shape)
        if any(d < 0 for d in shape):
            raise RunError(f"device value '{vid}': shape {list(shape)} has a negative dim")
        n = 1
        for d in shape:
            n *= d
        self._check_span(vid, value, n * (ARGMAX_RECORD_BYTES if value.layout == "argmax" else 2))
        if value.layout == "argmax":
            rec = np.frombuffer(self.hal.read_mem(value.addr, ARGMAX_RECORD_BYTES * n), dtype="<i4").reshape(n, 2)
            return rec[:, 0].reshape(shape).astype(dtype)
        x = np.frombuffer(self.hal.read_mem(value.addr, 2 * n), dtype="<f2").reshape(shape)
        return x.astype(dtype)

    def patched_stream(self, name: str, env: Mapping[str, int], loop_vars: Mapping[str, int] | None = None,
                       data: bytearray | None = None, lo: int = 0, hi: int | None = None) -> bytearray:
        """The bytes of stream ``name`` patched for ``env`` (dims) with every loop variable at its value in
        ``loop_vars`` (default 0: each loop's first iteration). With ``data``, only entries ``[lo, hi)`` of
        it are restored from the stream's bytes and re-patched (one loop body for its next iteration)."""
        s = self.manifest.streams[name]
        hi = s.count if hi is None else hi
        static = self._streams[name]
        if data is None:
            data = bytearray(static)
        else:
            data[lo * INSN_BYTES:hi * INSN_BYTES] = static[lo * INSN_BYTES:hi * INSN_BYTES]
        env = {**env, **{lp.var: 0 for lp in s.loops}, **(loop_vars or {})}
        off_entries = {g.index for g in s.guards if lo <= g.index < hi and not _eval(g.expr, env)}
        for p in s.patches:
            if not lo <= p.index < hi or p.index in off_entries:  # an entry turned off: its fields are meaningless
                continue
            v = _eval(p.expr, env)
            if p.kind == "addr":
                v //= _ADDRESS_UNIT
            mask = (1 << p.width) - 1
            if not 0 <= v <= mask:
                raise RunError(f"stream '{name}' entry {p.index}: {p.field} = {v} does not fit "
                               f"its {p.width}-bit field (dims {dict(env)})")
            off = p.index * INSN_BYTES + 4 * p.word
            (w,) = struct.unpack_from("<I", static, off)
            bound = w >> p.lo & mask   # the compiled stream holds the field at its upper bound
            if v > bound:
                raise RunError(f"stream '{name}' entry {p.index}: {p.field} = {v} exceeds the upper bound "
                               f"{bound} the stream was compiled with (dims {dict(env)})")
            (w,) = struct.unpack_from("<I", data, off)
            struct.pack_into("<I", data, off, (w & ~(mask << p.lo) & 0xFFFFFFFF) | (v << p.lo))
        for i in off_entries:
            off = i * INSN_BYTES
            (w0,) = struct.unpack_from("<I", data, off)
            struct.pack_into(f"<{INSN_WORDS}I", data, off, _NOP | (w0 & 0xFF00), *([0] * (INSN_WORDS - 1)))
        if self.serial:
            for off in range(lo * INSN_BYTES, hi * INSN_BYTES, INSN_BYTES):
                (w0,) = struct.unpack_from("<I", data, off)
                struct.pack_into("<I", data, off, w0 | _WAIT_ALL)
        return data

    def launches(self, name: str, env: Mapping[str, int]) -> list:
        """How a run of stream ``name`` for ``env`` goes: ``[(lo, hi, loop, iteration)]``, each a launch of
        entries ``[lo, hi)`` after re-patching loop ``loop``'s body for ``iteration`` (``loop`` None: the
        whole stream patched at every loop's first iteration). A loop that runs once costs nothing extra
        (it is part of the launch around it); one of n > 1 trips splits the run: the launch up to its end
        (iteration 0), its body alone for iterations 1 .. n-2, and iteration n-1 continues with what
        follows. A loop of 0 trips has its body guarded off (doc/backend.md)."""
        s = self.manifest.streams[name]
        plan, lo = [(0, 0, None, 0)], 0
        for j, lp in enumerate(s.loops):
            n = _eval(lp.trips, env)
            if n < 0 or n > 1 << 24:
                raise RunError(f"stream '{name}' loop {j} ({lp.var}): trip count {n} outside [0, {1 << 24}] "
                               f"(dims {dict(env)})")
            if n < 2:
                continue
            plan.append((lo, lp.end, None, 0))   # a launch with nothing re-patched before it
            plan += [(lp.start, lp.end, j, k) for k in range(1, n - 1)]
            plan.append((lp.start, lp.start, j, n - 1))   # re-patch for the last iteration, launch with the rest
            lo = lp.start
        plan.append((lo, s.count, None, 0))
        return [p for p in plan if p[1] > p[0] or p[2] is not None]

    def _run_stream(self, name: str, env: dict) -> None:
        s = self.manifest.streams[name]
        data = self.patched_stream(name, env)
        for lo, hi, j, k in self.launches(name, env):
            if j is not None:
                lp = s.loops[j]
                self.patched_stream(name, env, {lp.var: k}, data=data, lo=lp.start, hi=lp.end)
            if hi > lo:
                self._launch(name, data, lo, hi)

    def _launch(self, name: str, data: bytearray, lo: int, hi: int) -> None:
        """Entries ``[lo, hi)`` of stream ``name`` (patched bytes ``data``) run and waited for."""
        s = self.manifest.streams[name]
        self.stream_log.append((name, self.hal.stats().get("instructions", 0), lo, hi))
        if self.mode == "direct":
            for i in range(lo, hi):
                words = struct.unpack_from(f"<{INSN_WORDS}I", data, i * INSN_BYTES)
                if words[0] & 0xFF == _NOP:  # a disabled entry: its wait only delayed itself
                    continue
                self.hal.push(words)
            self.hal.wait()
            return
        old = self._written.get(name)
        if old is None:
            self.hal.write_mem(s.addr, bytes(data))
            self._written[name] = old = bytearray(data)
        else:  # rewrite only the runs of entries that changed
            i = lo
            while i < hi:
                if data[i * INSN_BYTES:(i + 1) * INSN_BYTES] == old[i * INSN_BYTES:(i + 1) * INSN_BYTES]:
                    i += 1
                    continue
                j = i + 1
                while j < hi and data[j * INSN_BYTES:(j + 1) * INSN_BYTES] != old[j * INSN_BYTES:(j + 1) * INSN_BYTES]:
                    j += 1
                self.hal.write_mem(s.addr + i * INSN_BYTES, bytes(data[i * INSN_BYTES:j * INSN_BYTES]))
                old[i * INSN_BYTES:j * INSN_BYTES] = data[i * INSN_BYTES:j * INSN_BYTES]
                i = j
        self.hal.run_stream(s.addr + lo * INSN_BYTES, hi - lo)
        self.hal.wait()


def _host_op(entry: str, step: HostStep, args: list, attrs: dict, dst: ValueInfo) -> np.ndarray:
    """``step`` run by its host kernel; a kernel that cannot take the operands and attributes the manifest
    gives is a :class:`RunError` naming the step (the manifest is data: its values may be any JSON)."""
    try:
        return run_host_op(step.op, args, attrs, dst.dtype)
    except (HostOpError, ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(f"entry '{entry}': host op '{step.op}' (writing {step.dst}) cannot run: {why}") from None


def _eval(expr: str, env: Mapping[str, int]) -> int:
    try:
        return eval_expr(expr, env)
    except ExprError as e:
        raise RunError(str(e)) from None


__all__ = ["Runtime", "BoundsError", "RunError"]
