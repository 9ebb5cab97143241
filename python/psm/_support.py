"""Python-side helpers of the native module: the default progress display of psm's long calls
(progress=True: a one-line text bar on sys.stderr, which notebooks show under the cell) and the
JSON form of option values."""

import os
import sys
import time


def json_default(value):
    """json.dumps(default=...): numpy scalars and arrays as numbers and lists, paths as text."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


class TextProgress:
    """progress(done, total) -> redraws "label [#####.....]  50% 500/1000 12.3 s"."""

    width = 30

    def __init__(self, label):
        self.label = label
        self.total = None
        self.start = time.monotonic()

    def __call__(self, done, total):
        if total != self.total:  # a new stage (e.g. sampling, then force labels)
            if self.total is not None:
                sys.stderr.write("\n")
            self.total = total
            self.start = time.monotonic()
        fraction = min(1.0, done / total) if total > 0 else 1.0
        filled = int(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self.start
        end = "\n" if done >= total else ""
        sys.stderr.write(
            f"\r{self.label} [{bar}] {100 * fraction:3.0f}% {done}/{total} {elapsed:.1f} s{end}"
        )
        sys.stderr.flush()
        if done >= total:
            self.total = None
