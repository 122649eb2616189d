"""Resident memory of the test process, for the leak tests (test_leaks.py,
test_interrupt.py). (On sys.path through pyproject's pytest
``pythonpath = ["tests"]``.)"""
import os


def rss_bytes():
    """Resident set size of this process (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
