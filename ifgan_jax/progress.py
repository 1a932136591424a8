"""Progress of long jobs on stderr: done/total, elapsed time, rate and ETA.

On a terminal a live bar (rich, which flax already depends on); otherwise, for logs and batch systems, one
plain line per 10% of the work, so a log of a 500K-sample run stays ~11 lines long.
"""

from __future__ import annotations

import sys
import time
import weakref

LINES_PER_JOB = 10  # plain lines (not a terminal): one each time another 1/10 of the work is done
REFRESH_PER_SECOND = 4  # live bar redraws
DESC_WIDTH = 24  # live bar: the job's description is cut to this many characters ...
BAR_WIDTH = 20
WIDE_TERMINAL = 100  # ... and the bar itself is drawn only on terminals at least this wide


class Progress:
    """`update(n)` as items finish; `close()` at the end. `enabled=False` prints nothing (--quiet)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "img", enabled: bool = True):
        self.total, self.done, self.desc, self.unit = total, initial, desc, unit
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.start_done = initial
        self._last_step = -1
        self._bar = _LiveBar(self) if enabled and self.tty else None

    @property
    def elapsed(self) -> float:
        """Seconds since this progress started (this session only, when resumed)."""
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        """Items per second in this session."""
        elapsed = self.elapsed
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        """Seconds left at the current rate (inf before the first item)."""
        rate = self.rate
        return max(self.total - self.done, 0) / rate if rate > 0 else float("inf")

    def stats(self) -> str:
        """'elapsed H:MM:SS, R unit/s, ETA H:MM:SS', as the plain line shows them."""
        return f"elapsed {_clock(self.elapsed)}, {self.rate:.1f} {self.unit}/s, ETA {_clock(self.eta)}"

    def line(self, info: str = "") -> str:
        """The plain progress line."""
        pct = 100.0 * self.done / max(self.total, 1)
        text = f"{self.desc} {self.done}/{self.total} ({pct:5.1f}%) {self.stats()}"
        return f"{text}, {info}" if info else text

    def update(self, n: int, info: str = "") -> None:
        """Count n more items; `info` (e.g. the current loss) joins the line."""
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None and self._bar.update(info):
            if self.done >= self.total:
                self._bar.stop()  # finished: free the terminal for the next job's bar even without close()
            return
        step = LINES_PER_JOB * self.done // max(self.total, 1)
        if step == self._last_step and self.done < self.total:
            return
        self._last_step = step
        if self.tty:  # a terminal where the live bar could not start: redraw one line in place
            print("\r" + self.line(info), end="", file=sys.stderr, flush=True)
        else:
            print(self.line(info), file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop the live bar (leaving its last state on screen) or end the in-place line."""
        if self._bar is not None and self._bar.running:
            self._bar.stop()
        elif self.enabled and self.tty and self._last_step >= 0:
            print(file=sys.stderr)


class _LiveBar:
    """rich's live progress bar on stderr for one Progress; falls back to plain lines if it cannot start."""

    def __init__(self, progress: Progress):
        self.progress, self.running = progress, False
        try:
            from rich.console import Console
            from rich.errors import LiveError
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress
            from rich.table import Column
        except ImportError:  # rich comes with flax; without it the plain line is redrawn in place
            return
        console = Console(file=sys.stderr)
        columns: list = [TextColumn("{task.description}",
                                    table_column=Column(no_wrap=True, overflow="ellipsis", max_width=DESC_WIDTH))]
        if console.width >= WIDE_TERMINAL:  # on 80 columns the numbers matter more than the bar
            columns += [BarColumn(bar_width=BAR_WIDTH), TextColumn("{task.percentage:>3.0f}%")]
        columns += [MofNCompleteColumn(), TextColumn("elapsed"), TimeElapsedColumn(),
                    # the one column that may wrap: a narrow terminal gets a second line, not every column cut
                    TextColumn("{task.fields[stats]}", table_column=Column(no_wrap=False))]
        self._rich = RichProgress(*columns, console=console, refresh_per_second=REFRESH_PER_SECOND,
                                  redirect_stdout=False)  # stdout stays the job's own (rich would move it to stderr)
        self._task = self._rich.add_task(progress.desc, total=max(progress.total, 1), completed=progress.done,
                                         stats=self._stats(""))
        try:
            self._rich.start()
        except LiveError:  # another live display is active (a job inside a job): plain lines instead
            return
        self.running = True
        # A job that raises never reaches close(): stop the bar anyway (restores the cursor) at exit.
        self._finalizer = weakref.finalize(self, self._rich.stop)

    def _stats(self, info: str) -> str:
        p = self.progress
        text = f"{p.rate:.1f} {p.unit}/s ETA {_clock(p.eta)}"
        return f"{text}, {info}" if info else text

    def update(self, info: str) -> bool:
        """Show the progress's state; False when the bar is not running."""
        if self.running:
            self._rich.update(self._task, completed=self.progress.done, stats=self._stats(info))
        return self.running

    def stop(self) -> None:
        self.running = False
        self._finalizer()


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
