"""The same NetPyNE or NEST regions on one service and split over several (issue 25, PROTOCOL.md §4.2).

Runs `cosim run` three times with the same seed: every region on one service; the regions dealt
round-robin over N services with `run.inter_service: spikes`; and the same split with `rates`.
Prints, per population, the spike count of each run and whether the split runs' spikes equal the
one-service run's (time and cell index within the population), then the totals and loop times::

    python bench/split_spikes.py                              # 20 regions, 4 services, 200 ms
    python bench/split_spikes.py --regions 71 38 59 39 --services 2 --duration 100
    python bench/split_spikes.py --backend nest --nest-generator numpy     # NEST, trains drawn per region

On NEST the split gives identical spikes only with ``--nest-generator numpy``: NEST's own Poisson
generators draw from the kernel's RNG, whose stream depends on what else the process simulates.

Loop times come from each run's summary line and are noisy on a shared machine.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from cosim.sdk.spiking_file import population_spikes

REGIONS = [2, 5, 9, 13, 17, 21, 25, 29, 33, 37, 42, 45, 49, 53, 57, 60, 64, 67, 71, 74]


def config(name: str, groups: list[list[int]], duration: float, seed: int, backend: str = "netpyne",
           params: dict | None = None, **run) -> dict:
    return {"run": {"name": name, "duration_ms": duration, "seed": seed, "progress": False, **run},
            "spiking_nodes": [{"name": f"s{i}", "backend": backend, "regions": g,
                               "params": {"record": {"plot": False}, **(params or {})}} for i, g in enumerate(groups)]}


def spikes(out: Path, names: list[str]) -> dict[str, list[tuple[float, int]]]:
    """population label -> sorted (t_ms, cell index within the population), over the nodes `names`."""
    return {lab: sp for n in names for lab, sp in population_spikes(out / f"{n}.h5").items()}


def run(cfg: dict, where: Path) -> tuple[Path, str]:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = where / "out"
    p = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(path), "--out", str(out), "--no-plots"],
                       capture_output=True, text=True, cwd=where)
    if p.returncode != 0:
        sys.exit(f"{cfg['run']['name']}: cosim run failed ({p.returncode}): {p.stderr[-1500:]}")
    m = re.search(r"simulated in ([0-9.]+) s", p.stderr + p.stdout)
    return out, (m.group(1) + " s" if m else "?")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, nargs="+", default=REGIONS)
    ap.add_argument("--services", type=int, default=4)
    ap.add_argument("--duration", type=float, default=200.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--backend", choices=["netpyne", "nest"], default="netpyne")
    ap.add_argument("--nest-generator", choices=["nest", "numpy"], default="nest",
                    help="NEST only: input.generator (numpy: the same trains however regions are grouped)")
    a = ap.parse_args(argv)
    kw = {"backend": a.backend, "params": {"input": {"generator": a.nest_generator}} if a.backend == "nest" else None}
    groups = [a.regions[i::a.services] for i in range(a.services)]
    names = [f"s{i}" for i in range(a.services)]
    with tempfile.TemporaryDirectory() as tmp:
        one, t1 = run(config("one", [a.regions], a.duration, a.seed, **kw), Path(tmp) / "one")
        split, t2 = run(config("split", groups, a.duration, a.seed, inter_service="spikes", **kw), Path(tmp) / "spikes")
        rates, t3 = run(config("rates", groups, a.duration, a.seed, inter_service="rates", **kw), Path(tmp) / "rates")
        s1, s2, s3 = spikes(one, ["s0"]), spikes(split, names), spikes(rates, names)
    same = 0
    print(f"{'population':>10} {'one':>6} {'spikes':>7} {'rates':>6}  split by spikes equals one service")
    for lab in sorted(s1, key=lambda x: (x[0], int(x.split("_")[1]))):
        eq = s1[lab] == s2.get(lab)
        same += eq
        print(f"{lab:>10} {len(s1[lab]):6d} {len(s2.get(lab, [])):7d} {len(s3.get(lab, [])):6d}  {'yes' if eq else 'NO'}")
    tot = [sum(map(len, s.values())) for s in (s1, s2, s3)]
    print(f"{'total':>10} {tot[0]:6d} {tot[1]:7d} {tot[2]:6d}  {same}/{len(s1)} populations identical")
    print(f"loop: one service {t1}, {a.services} services by spikes {t2}, by rates {t3}")
    return 0 if same == len(s1) else 1


if __name__ == "__main__":
    raise SystemExit(main())
