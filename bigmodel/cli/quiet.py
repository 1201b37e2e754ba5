"""Keeping TensorFlow's start-up lines off a quiet worker's terminal.

TensorFlow 2.18+ prints them from C++ before its logging is set up, so TF_CPP_MIN_LOG_LEVEL no longer
hides them: the worker's stderr (fd 2, inherited by its prefork children) goes through a pipe whose
reader drops exactly these lines and passes everything else on.
"""

from __future__ import annotations

import os
import re
import threading

NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
                   rb"|I0000 \S+ +\d+ (port|cpu_feature_guard)\.cc:\d+\]"
                   rb"|To enable the following instructions: )")


def drop_tensorflow_noise() -> threading.Thread:
    """Route this process's stderr, and its future children's, through the noise filter (a thread that
    ends when every writer has closed its stderr)."""
    read, write = os.pipe()
    terminal = os.dup(2)
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        with os.fdopen(read, "rb") as lines, os.fdopen(terminal, "wb", buffering=0) as out:
            for line in lines:
                if not NOISE.match(line):
                    out.write(line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    return thread
