"""Tie a helper process's life to its parent's, so a killed server leaves no orphans."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send us ``signum`` (SIGTERM: die) when our parent exits; exit now if it
    already has. (The kernel sends it when the parent *thread* that started us exits.)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):  # not Linux: shutdown then relies on the parent's on_exit
        pass
    if os.getppid() != expected_parent:
        raise SystemExit(0)
