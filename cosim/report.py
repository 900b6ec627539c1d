"""What a finished run leaves for people: summary.json, a printed summary, and plots."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_run_outputs(out: Path, summary: dict, plots: bool = True) -> None:
    out = Path(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if plots:
        try:
            from cosim.plots import plot_run
            for p in plot_run(out):
                log.info("plot written: %s", p)
        except Exception as e:  # plots are a convenience; the data is already safe
            log.warning("could not draw plots: %s", e)
    print(format_summary(summary))


def format_summary(s: dict) -> str:
    lines = [f"cosim: completed {s['windows']} windows of {s['window_ms']:g} ms = {s['simulated_ms']:g} ms simulated "
             f"in {s['wall_s']:.2f} s ({s['windows_per_s']:.0f} windows/s, real-time factor {s['real_time_factor']:.2f})"]
    t = s.get("timing", {})
    if "window_wall_ms" in t:
        lines.append(f"  per window: {t['window_wall_ms']:.3f} ms wall at the coordinator")
    for node, v in t.items():
        if isinstance(v, dict):
            lines.append(f"  {node:>12}: compute {v['compute_ms']:.3f} ms, waiting {v['wait_ms']:.3f} ms per window")
    lines.append(f"  results: {s['results_dir']}")
    return "\n".join(lines)
