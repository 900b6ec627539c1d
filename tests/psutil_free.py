"""Process checks without psutil: which project processes are alive (reads /proc)."""
from __future__ import annotations

import os
from pathlib import Path


def cosim_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, cmdline) of live processes whose command line contains `marker`."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((l for l in (d / "status").read_text().splitlines() if l.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmd and "zombie" not in state:
            out.append((int(d.name), cmd))
    return out
