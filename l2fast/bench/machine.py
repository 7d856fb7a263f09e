"""The machine the figures are measured on: CPU, last-level cache, memory,
the other processes' load, and the thread limits of NumPy's BLAS and torch."""
import contextlib
import os
import platform

from .._config import config

MIB = 1 << 20


def _parse_size(text):
    """Bytes of a sysfs size such as "32768K"."""
    text = text.strip().upper()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in units:
        return int(text[:-1]) * units[text[-1]]
    return int(text)


def _sysfs_last_level_cache():
    """(level, bytes) of CPU 0's largest data cache in sysfs, or None."""
    best = None
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            with open(f"{base}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{base}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{base}/{entry}/size") as f:
                size = _parse_size(f.read())
            if kind != "Instruction" and (best is None or (level, size) > best):
                best = (level, size)
    except (OSError, ValueError):
        return None
    return best


def last_level_cache():
    """The largest data cache of CPU 0, read from sysfs or sysconf.

    Returns
    -------
    (int or None, str)
        Its size in bytes and a description ("L3, 32 MiB"); (None,
        "unknown") when neither tells.
    """
    best = _sysfs_last_level_cache()
    if best is not None:
        return best[1], f"L{best[0]}, {best[1] / MIB:.4g} MiB"
    for level in (3, 2):
        try:
            size = os.sysconf(f"SC_LEVEL{level}_CACHE_SIZE")
        except (ValueError, OSError):
            continue
        if size and size > 0:
            return size, f"L{level}, {size / MIB:.4g} MiB"
    return None, "unknown"


def available_memory():
    """Bytes of memory available to a new allocation, or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_name():
    """The CPU's model name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average():
    """The 1-minute load average, or None."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def machine_description():
    """What the numbers were measured on (goes into --json).

    Returns
    -------
    dict
        cpu, logical_cpus, last_level_cache_bytes, last_level_cache,
        memory_bytes, load_average_1min and l2fast_config.
    """
    llc, llc_text = last_level_cache()
    total = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "last_level_cache_bytes": llc,
        "last_level_cache": llc_text,
        "memory_bytes": total,
        "load_average_1min": load_average(),
        "l2fast_config": config(),
    }


def default_roof_bytes():
    """Size of the roof buffer: twice the last-level cache (1 GiB if unknown),
    at least 64 MiB, and at most a quarter of the available memory."""
    llc, _ = last_level_cache()
    size = 2 * llc if llc else 1 << 30
    size = max(size, 64 * MIB)
    avail = available_memory()
    if avail:
        size = min(size, avail // 4)
    return size


def torch_version():
    """torch's version (torch must be installed)."""
    import torch
    return torch.__version__


@contextlib.contextmanager
def thread_limits(threads, use_torch):
    """Limit NumPy's BLAS (with threadpoolctl, when installed) and torch to `threads`.

    Yields
    ------
    bool
        True when the BLAS limit could be applied.
    """
    with contextlib.ExitStack() as stack:
        limited = False
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=threads, user_api="blas"))
            limited = True
        if use_torch:
            import torch
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
        yield limited


class OtherLoad:
    """The share of CPU time other processes take from the moment this is made
    (Linux: /proc/stat less this process's own CPU time; None elsewhere)."""

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        t = os.times()
        return sum(fields[:8]) / ticks, idle / ticks, t.user + t.system

    def share(self):
        """Share of the CPU time since construction used by other processes
        (0 to 1), or None when it cannot be told."""
        end = self._snapshot()
        if self.start is None or end is None:
            return None
        total, idle, own = (e - s for e, s in zip(end, self.start))
        if total <= 0:
            return None
        return min(max((total - idle - own) / total, 0.0), 1.0)
