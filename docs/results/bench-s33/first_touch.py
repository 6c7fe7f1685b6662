"""What a first write to fresh memory costs on this machine: 256 MB written in replay-buffer-sized pieces (one
stacked Pong observation, 28224 bytes) into a new array, with and without the 2 MB huge pages numpy asks the kernel
for, then written again; and the kernel's count of huge-page faults.

    python docs/results/bench-s33/first_touch.py
"""
from __future__ import annotations

import time

import numpy as np

try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _set_madvise_hugepage

PIECE, TOTAL = 28224, 256 << 20


def thp_faults() -> int:
    """The kernel's count of transparent huge pages allocated on a fault."""
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("thp_fault_alloc "))


def write(a: np.ndarray, value: int) -> float:
    """Seconds to write the first TOTAL bytes of `a`, a piece at a time."""
    start = time.perf_counter()
    for i in range(0, TOTAL, PIECE):
        a[i:i + PIECE] = value
    return time.perf_counter() - start


def main() -> None:
    """Print the times and the huge-page faults for both settings, twice."""
    for hugepages in (True, False, True, False):
        _set_madvise_hugepage(hugepages)
        a = np.zeros(1 << 30, np.uint8)
        faults = thp_faults()
        first = write(a, 1)
        faults = thp_faults() - faults
        again = write(a, 2)
        print(f"huge pages {'on ' if hugepages else 'off'}: first write of 256 MB {first:.2f} s "
              f"({faults} huge-page faults), written again {again:.3f} s")
        del a


if __name__ == "__main__":
    main()
