"""Helpers shared by the benchmarks: timing and latency percentiles."""

import statistics
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the rest of the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def report(name: str, ours_s: float, baseline_name: str, baseline_s: float, target: str) -> None:
    """One line per measured case: ours, the baseline measured in the same run, their ratio, the target."""
    ratio = baseline_s / ours_s if ours_s else float("inf")
    print(f"{name}: ours {ours_s:.3f}s | {baseline_name} {baseline_s:.3f}s | ratio {ratio:.2f}x | target {target}")
