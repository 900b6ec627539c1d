"""Security cost: benchmarks 1 (protocol) and 2 (overlap) with CURVE on (`cosim keys DIR`,
coordinator.curve: true, coordinator.keys_dir: DIR).

Each CURVE figure comes with its own baseline measured in the same call (raw pyzmq round trip,
simulators alone); `cost_vs_plain` compares with the plain figures of the same suite run when
given (bench/run_all.py passes them).

Usage: python bench/security.py [--size tiny|full]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import overlap, protocol  # noqa: E402


def run(size: str = "full", out: Path | None = None, plain_protocol: dict | None = None,
        plain_overlap: dict | None = None, with_overlap: bool = True) -> dict:
    out = Path(out or tempfile.mkdtemp(prefix="bench-security-"))
    p = protocol.run(size, out / "protocol", curve=True)
    res = {"benchmark": "security", "size": size, "protocol": p,
           "protocol_ratio": p["ratio"], "protocol_aim": 1.5}
    if plain_protocol:
        res["protocol_cost_vs_plain"] = p["lockstep_per_window_us"] / plain_protocol["lockstep_per_window_us"]
    if with_overlap:
        o = overlap.run(size, out / "overlap", curve=True)
        res.update(overlap=o, overlap_ratio=o["ratio"], overlap_aim=1.10)
        if plain_overlap:
            res["overlap_cost_vs_plain"] = o["loop_s"] / plain_overlap["loop_s"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--out")
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None)
    print(f"CURVE: protocol ratio {res['protocol_ratio']:.2f}, overlap ratio {res.get('overlap_ratio', float('nan')):.2f}",
          file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
