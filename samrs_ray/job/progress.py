"""Where a long run is: scenes done, tiles written, a rate and an ETA, as one line every few
seconds. One line (not a redrawn bar) reads the same in a terminal, in `ray job submit`'s log
and in a KubeRay driver pod's log; in a terminal, Ray Data draws its per-stage bars beside it."""

from __future__ import annotations

import time
from typing import Callable

EVERY_S = 10.0


class Progress:
    """Counts what comes out of the graph and says so every `every_s` seconds, and at the end."""

    def __init__(self, scenes: int, say: Callable[[str], None], every_s: float = EVERY_S):
        self.scenes, self.say, self.every_s = scenes, say, every_s
        self.started = self.last = time.monotonic()
        self.scenes_done = self.tiles_written = self.tiles_failed = 0

    def update(self, scenes: int = 0, written: int = 0, failed: int = 0) -> None:
        self.scenes_done += scenes
        self.tiles_written += written
        self.tiles_failed += failed
        if time.monotonic() - self.last >= self.every_s:
            self.say(self.line())
            self.last = time.monotonic()

    def done(self) -> None:
        self.say(self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.tiles_written / elapsed if elapsed > 0 else 0.0
        share = self.scenes_done / self.scenes if self.scenes else 1.0
        eta = f", ETA {duration(elapsed / share - elapsed)}" if 0 < share < 1 else ""
        failed = f", {self.tiles_failed} failed" if self.tiles_failed else ""
        return (f"progress: {self.scenes_done}/{self.scenes} scenes done, {self.tiles_written} tiles written"
                f"{failed} ({rate:.1f} tiles/s, {duration(elapsed)} so far{eta})")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
