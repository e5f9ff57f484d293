"""Process memory on Linux, for the benchmarks that measure peaks in a fresh process."""

from __future__ import annotations

from pathlib import Path


def rss_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (…) of this process in kB, from /proc; 0 where it is not there."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS so a peak covers only what follows (Linux ≥ 4.0);
    False when the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return rss_kb("VmHWM") <= rss_kb("VmRSS") + 1024
