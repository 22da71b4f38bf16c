"""Keeps SVT-AV1 from raising this process's threads to real-time priority.

SVT-AV1, run as root (euid 0, CAP_SYS_NICE), switches the thread that opens the first
encoder of a process to real-time SCHED_FIFO priority 99 and never switches it back; every
thread created later inherits it: its own encoder threads, a build's worker processes, the
user's training. Two such processes on a 2-core machine starved everything else, and a
spawned worker whose spin-waiting threads ran at FIFO 99 never finished (seen here). Its
check runs once per process; it fails, and SVT-AV1 then uses normal threads for good,
when the calling thread lacks CAP_SYS_NICE. So each encode runs in ``normal_priority``:
with that capability out of the thread's effective set and the thread's scheduling
restored afterwards. A module of its own because it talks to libc, not to an encoder.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

CAP_SYS_NICE = 23
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _thread_capabilities(libc: ctypes.CDLL) -> tuple[_CapHeader, ctypes.Array] | None:
    """This thread's capability sets (Linux), or None where they cannot be read."""
    header, data = _CapHeader(_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return None
    return header, data


@contextmanager
def normal_priority() -> Iterator[None]:
    """Run the block with CAP_SYS_NICE out of this thread's effective set, then put the
    thread's scheduling policy and capabilities back as they were (Linux; elsewhere and
    for unprivileged users this changes nothing)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    libc = ctypes.CDLL(None, use_errno=True)
    caps = _thread_capabilities(libc)
    nice = 1 << CAP_SYS_NICE
    dropped = False
    if caps is not None and caps[1][0].effective & nice:
        caps[1][0].effective &= ~nice
        dropped = libc.capset(ctypes.byref(caps[0]), caps[1]) == 0
    try:
        yield
    finally:
        if caps is not None and dropped:
            caps[1][0].effective |= nice
            libc.capset(ctypes.byref(caps[0]), caps[1])
        if (os.sched_getscheduler(0), os.sched_getparam(0)) != (policy, param):
            os.sched_setscheduler(0, policy, param)
