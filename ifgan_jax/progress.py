"""A dependency-free progress line with throughput, on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """`update(n)` as items finish; redraws at most 4 times a second (every 10% when not a terminal)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "img", enabled: bool = True):
        self.total, self.done, self.desc, self.unit = total, initial, desc, unit
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.start_done = initial
        self._last_draw = 0.0
        self._last_decile = -1

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def update(self, n: int, info: str = "") -> None:
        """Count n more items; `info` (e.g. the current loss) and an ETA join the line when given."""
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        decile = 10 * self.done // max(self.total, 1)
        if self.tty and now - self._last_draw < 0.25 and self.done < self.total:
            return
        if not self.tty and decile == self._last_decile and self.done < self.total:
            return
        self._last_draw, self._last_decile = now, decile
        pct = 100.0 * self.done / max(self.total, 1)
        line = f"{self.desc} {self.done}/{self.total} ({pct:5.1f}%) {self.rate:8.1f} {self.unit}/s"
        if info:
            rate = self.rate
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            line += f" {info} ETA {_clock(eta)}"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
