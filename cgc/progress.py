"""A dependency-free progress bar for terminals."""
import sys
import time


class ProgressBar:
    """Redraws one line on stderr at most 10 times a second; silent when disabled."""

    def __init__(self, total, enabled=True, width=30, stream=None):
        # total None: a count of unknown length (frames of a stream), shown without a bar.
        self.total = None if total is None else max(int(total), 1)
        self.enabled = enabled
        self.width = width
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._start = time.perf_counter()

    def update(self, done, note=""):
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and (self.total is None or done < self.total):
            return
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        if self.total is None:
            self.stream.write(f"\r{done} {rate:6.1f} it/s {note}")
            self.stream.flush()
            return
        filled = int(self.width * done / self.total)
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] "
                          f"{done}/{self.total} {rate:6.1f} it/s {note}")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
