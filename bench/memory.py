"""Memory of a process as `make bench` samples it: RSS, its mapped-file share, the trend."""

from __future__ import annotations

import statistics
import threading

from uptake_server.store.memory import resident_bytes


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Return a process's resident memory in MB: all of it, or one part (see
    `resident_bytes`)."""
    return resident_bytes(field, pid) / 2**20


class RssSampler:
    """Sample a process's resident memory every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval, self.samples = pid, interval, [rss_mb(pid)]
        self.files_mb = rss_mb(pid, "RssFile")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(rss_mb(self.pid))
            self.files_mb = max(self.files_mb, rss_mb(self.pid, "RssFile"))

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb(self.pid))
        return self.samples


def trend_per_minute(samples: list[float], interval: float) -> float:
    """Return the least-squares slope of samples taken `interval` s apart, per minute,
    leaving out the first fifth (warm-up)."""
    tail = samples[len(samples) // 5 :]
    if len(tail) < 3:
        return 0.0
    xs = [i * interval / 60 for i in range(len(tail))]
    return statistics.linear_regression(xs, tail).slope


def minute_medians(samples: list[float], interval: float) -> list[float]:
    """Return the median of the samples of each minute (the last one may be partial), so a
    level that rises, or settles after a warm-up, shows as it is."""
    per_minute = max(1, round(60 / interval))
    return [
        round(statistics.median(samples[start : start + per_minute]), 1)
        for start in range(0, len(samples), per_minute)
    ]
