"""The device memory model: HBM, DDR and on-chip SRAM regions, sparsely backed.

Storage is allocated in pages on first write, so a target with gigabytes of
HBM costs only what a test touches. Each page keeps a written-mask so that,
with ``check_uninit``, a read of never-written bytes raises
:class:`UninitializedReadError` naming the first such address.

Addresses are byte addresses of the target's address map
(``target.figures.regions``); an access must lie inside one region.

Between :meth:`DeviceMemory.start_recording` and
:meth:`~DeviceMemory.stop_recording` every read and write also logs its
byte range, so a test can compare what an instruction declares it touches
(``dlavm.target.insn_model``) with what its unit actually touched. Off by
default; when off it costs one attribute test per access.
"""
from __future__ import annotations

import numpy as np

from dlavm.target import Region, Target
from hw_models.errors import AddressError, UninitializedReadError

PAGE_BITS = 20
PAGE = 1 << PAGE_BITS

#: default budget of values kept by :meth:`DeviceMemory.derived` (the MVM's float32 weights of one
#: 7B decoder layer and the LM head take 1.4 GB)
DERIVED_BYTES = 2 << 30


class DeviceMemory:
    """Byte-addressable device memory with region, bounds and init checking."""

    def __init__(self, target: Target, check_uninit: bool = True, derived_bytes: int = DERIVED_BYTES):
        self.target = target
        self.regions: tuple[Region, ...] = target.figures.regions
        self.check_uninit = check_uninit
        self._pages: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._log: tuple[list, list] | None = None   # (reads, writes) while recording
        #: budget of :meth:`derived` values (their ``nbytes``); 0 keeps none
        self.derived_bytes = derived_bytes
        self._derived: dict[tuple, tuple] = {}        # (addr, nbytes, key) -> (value, checked, size)
        self._derived_pages: dict[int, set] = {}      # page index -> keys whose range meets the page
        self._derived_used = 0

    # ------------------------------------------------------------ recording
    def start_recording(self) -> None:
        """Log the byte range of every read and write from now on (see module docstring)."""
        self._log = ([], [])

    def stop_recording(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Stop logging; ``(reads, writes)``: the ``[start, end)`` ranges accessed since the start."""
        log, self._log = self._log, None
        if log is None:
            raise RuntimeError("stop_recording() without start_recording()")
        return log

    # ------------------------------------------------------------ regions
    def region_of(self, addr: int, nbytes: int, what: str = "access") -> Region:
        """The region holding ``[addr, addr + nbytes)``, else :class:`AddressError`."""
        for r in self.regions:
            if r.base <= addr < r.end:
                if addr + nbytes > r.end:
                    raise AddressError(f"{what}: [{addr:#x}, {addr + nbytes:#x}) runs past the end of "
                                       f"{r.name} at {r.end:#x}")
                return r
        spans = ", ".join(f"{r.name} [{r.base:#x}, {r.end:#x})" for r in self.regions)
        raise AddressError(f"{what}: address {addr:#x} ({nbytes} bytes) is in no memory region; regions: {spans}")

    def _page(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        page = self._pages.get(index)
        if page is None:
            page = (np.zeros(PAGE, dtype=np.uint8), np.zeros(PAGE, dtype=bool))
            self._pages[index] = page
        return page

    def _spans(self, addr: int, nbytes: int):
        """(page index, offset in page, offset in buffer, length) covering the range."""
        pos, end = addr, addr + nbytes
        while pos < end:
            idx, off = pos >> PAGE_BITS, pos & (PAGE - 1)
            n = min(PAGE - off, end - pos)
            yield idx, off, pos - addr, n
            pos += n

    # ------------------------------------------------------------ bytes
    def write(self, addr: int, data, what: str = "write") -> None:
        """Store bytes (``bytes`` or any array, taken as its raw bytes) at ``addr``."""
        buf = np.frombuffer(bytes(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
            else np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        self.region_of(addr, buf.size, what)
        if self._log is not None and buf.size:
            self._log[1].append((addr, addr + buf.size))
        if self._derived_pages and buf.size:
            self._invalidate(addr, buf.size)
        for idx, off, boff, n in self._spans(addr, buf.size):
            data_p, mask_p = self._page(idx)
            data_p[off:off + n] = buf[boff:boff + n]
            mask_p[off:off + n] = True

    def read(self, addr: int, nbytes: int, what: str = "read", check: bool | None = None) -> np.ndarray:
        """A copy of ``nbytes`` at ``addr`` as uint8; unwritten bytes read as 0 unless checked."""
        self.region_of(addr, nbytes, what)
        if self._log is not None and nbytes:
            self._log[0].append((addr, addr + nbytes))
        check = self.check_uninit if check is None else check
        out = np.zeros(nbytes, dtype=np.uint8)
        for idx, off, boff, n in self._spans(addr, nbytes):
            page = self._pages.get(idx)
            if page is None:
                if check and n:
                    raise UninitializedReadError(f"{what}: reads never-written memory at {addr + boff:#x}")
                continue
            data_p, mask_p = page
            if check:
                m = mask_p[off:off + n]
                if not m.all():
                    first = addr + boff + int(np.argmin(m))
                    raise UninitializedReadError(f"{what}: reads never-written memory at {first:#x}")
            out[boff:boff + n] = data_p[off:off + n]
        return out

    # ------------------------------------------------------------ derived values
    def derived(self, addr: int, nbytes: int, key, build, what: str = "read"):
        """``build(self.read(addr, nbytes, what))``, kept and returned again until a write overlaps
        ``[addr, addr + nbytes)``.

        For values computed from memory that is read far more often than written (the MVM's weights
        in the layout of its numerics): a later call with the same range and ``key`` (what ``build``
        computes, e.g. the format and shape) skips the read and the build. Invalidation is exact:
        any :meth:`write` of a byte in the range drops the value. Every call is bounds-checked and,
        while recording, logged as a read of the range; the uninitialised-read check runs on the
        call that builds (written bytes never become unwritten). A value whose ``nbytes`` would take
        the kept total past :attr:`derived_bytes` is built and returned but not kept.
        """
        self.region_of(addr, nbytes, what)
        k = (addr, nbytes, key)
        hit = self._derived.get(k)
        if hit is not None and (hit[1] or not self.check_uninit):
            if self._log is not None and nbytes:
                self._log[0].append((addr, addr + nbytes))
            return hit[0]
        if hit is not None:
            self._drop(k)
        value = build(self.read(addr, nbytes, what))
        size = int(value.nbytes)
        if nbytes and self._derived_used + size <= self.derived_bytes:
            self._derived[k] = (value, self.check_uninit, size)
            self._derived_used += size
            for idx in range(addr >> PAGE_BITS, ((addr + nbytes - 1) >> PAGE_BITS) + 1):
                self._derived_pages.setdefault(idx, set()).add(k)
        return value

    def _drop(self, k: tuple) -> None:
        addr, nbytes, _ = k
        self._derived_used -= self._derived.pop(k)[2]
        for idx in range(addr >> PAGE_BITS, ((addr + nbytes - 1) >> PAGE_BITS) + 1):
            keys = self._derived_pages[idx]
            keys.discard(k)
            if not keys:
                del self._derived_pages[idx]

    def _invalidate(self, addr: int, nbytes: int) -> None:
        """Drop every derived value whose range overlaps ``[addr, addr + nbytes)``."""
        end = addr + nbytes
        for idx in range(addr >> PAGE_BITS, ((end - 1) >> PAGE_BITS) + 1):
            for k in list(self._derived_pages.get(idx, ())):
                if k[0] < end and addr < k[0] + k[1]:
                    self._drop(k)

    @property
    def derived_kept_bytes(self) -> int:
        """Bytes of the values :meth:`derived` keeps now."""
        return self._derived_used

    # ------------------------------------------------------------ typed views
    def read_array(self, addr: int, dtype, shape, what: str = "read") -> np.ndarray:
        dt = np.dtype(dtype).newbyteorder("<")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        n = int(np.prod(shape, dtype=np.int64))
        return self.read(addr, n * dt.itemsize, what).view(dt).reshape(shape)

    def write_array(self, addr: int, array: np.ndarray, what: str = "write") -> None:
        arr = np.ascontiguousarray(array)
        self.write(addr, arr.astype(arr.dtype.newbyteorder("<"), copy=False), what)

    def read_rows(self, addr: int, row_bytes: int, rows: int, stride: int, what: str = "read") -> np.ndarray:
        """uint8 [rows, row_bytes] of a strided 2-D block."""
        if rows == 0 or row_bytes == 0:
            return np.zeros((rows, row_bytes), dtype=np.uint8)
        if stride == row_bytes:
            return self.read(addr, rows * row_bytes, what).reshape(rows, row_bytes)
        return np.stack([self.read(addr + r * stride, row_bytes, f"{what} row {r}") for r in range(rows)])

    def write_rows(self, addr: int, block: np.ndarray, stride: int, what: str = "write") -> None:
        """Store uint8 [rows, row_bytes] as a strided 2-D block."""
        rows, row_bytes = block.shape
        if rows == 0 or row_bytes == 0:
            return
        if stride == row_bytes:
            self.write(addr, block, what)
            return
        for r in range(rows):
            self.write(addr + r * stride, block[r], f"{what} row {r}")

    def check_range(self, addr: int, nbytes: int, what: str) -> Region:
        """Bounds check only (timing-only mode touches no data)."""
        return self.region_of(addr, max(nbytes, 1), what)

    @property
    def resident_bytes(self) -> int:
        """Host memory the sparse backing uses (pages allocated x page size)."""
        return len(self._pages) * PAGE
