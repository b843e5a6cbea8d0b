"""Progress of a long command on stderr: the ``on_progress(stage, done, total, detail)`` callback of
:func:`dlavm.compiler.compile`, :func:`dlavm.llm.compile_llm` and :func:`dlavm.models.import_model`.

On a terminal with ``tqdm`` installed (the ``dev`` extra) each stage is one tqdm bar, rewritten in
place. Otherwise (stderr not a terminal: a log file, a pipe, CI; or no tqdm, as on a deployment host)
progress is plain lines, one per step, ``[stage done/total] detail``, never ``\\r``-joined; a stage
without a known total (weights packed, streams encoded: hundreds of quick steps on a large model)
prints at most one line per ``min_interval`` seconds, plus its first and its last step.
:meth:`Progress.close` ends the bar or line, so an ``error:`` line that follows stands on a line of
its own; use it as a context manager.
"""
from __future__ import annotations

import sys
import time


def _tqdm():
    """tqdm's class, or None where it is not installed."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """Callable ``(stage, done, total, detail)`` that shows progress on ``stream`` (default stderr).

    ``bars``: use tqdm bars (default: when ``stream`` is a terminal and tqdm is installed).
    """

    def __init__(self, stream=None, bars: bool | None = None, min_interval: float = 1.0):
        self.stream = stream if stream is not None else sys.stderr
        tqdm = _tqdm()
        if bars is None:
            isatty = getattr(self.stream, "isatty", None)
            bars = bool(isatty and isatty()) and tqdm is not None
        self._tqdm = tqdm if bars else None
        self.min_interval = min_interval
        self._stage = None
        self._bar = None
        self._last_line = 0.0
        self._pending = None   # a step not printed yet (plain lines, throttled)

    def __call__(self, stage: str, done: int, total: int | None, detail: str = "") -> None:
        if self._tqdm is not None:
            self._bar_step(stage, done, total, detail)
        else:
            self._line_step(stage, done, total, detail)

    # ---- tqdm bars (terminal)
    def _bar_step(self, stage, done, total, detail):
        if stage != self._stage:
            self._end_bar()
            self._stage = stage
            self._bar = self._tqdm(total=total, desc=stage, file=self.stream, leave=True, dynamic_ncols=True,
                                   unit="" if total else " steps")
        bar = self._bar
        if total is not None and bar.total != total:
            bar.total = total
        bar.set_postfix_str(str(detail)[:60], refresh=False)
        bar.update(max(done - bar.n, 0))

    def _end_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # ---- plain lines (no terminal or no tqdm)
    def _line_step(self, stage, done, total, detail):
        line = f"[{stage} {done}/{total}] {detail}" if total else f"[{stage} {done}] {detail}"
        now = time.monotonic()
        first = stage != self._stage
        last = total is not None  # a stage with a known total (import stages, passes) prints every step
        if first:
            self._flush_pending()
            self._stage = stage
        if first or last or now - self._last_line >= self.min_interval:
            self._pending = None
            self._write(line)
            self._last_line = now
        else:
            self._pending = line

    def _flush_pending(self):
        if self._pending is not None:
            self._write(self._pending)
            self._pending = None

    def _write(self, line: str):
        self.stream.write(line.rstrip() + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a worker started, a point failed) that does not end the current stage: above
        the bar on a terminal, a plain line otherwise."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self._flush_pending()
            self._write(text)

    # ---- end
    def close(self) -> None:
        """End the current bar (or print the last throttled step): what follows starts a new line."""
        self._end_bar()
        self._flush_pending()
        self._stage = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Progress"]
