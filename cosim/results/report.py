"""What a finished run leaves for people: summary.json, a printed summary, and plots.

The summary carries the timing breakdown per service (cosim.results.breakdown) so a user sees why a
run is slow; `cosim report RUN_DIR` prints it again for any run directory.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def write_run_outputs(out: Path, summary: dict, plots: bool = True, echo: bool = True) -> None:
    out = Path(out)
    try:
        from cosim.results.breakdown import breakdown
        summary["breakdown"] = breakdown(out)
    except Exception as e:  # the breakdown is a convenience; the data is already safe
        log.warning("could not compute the timing breakdown: %s", e)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if plots:
        try:
            from cosim.results.figures import plot_run
            for p in plot_run(out):
                log.info("plot written: %s", p)
            from cosim.results.breakdown import plot_breakdown
            log.info("plot written: %s", plot_breakdown(out))
        except Exception as e:  # plots are a convenience; the data is already safe
            log.warning("could not draw plots: %s", e)
    if echo:
        print(format_summary(summary))


def format_summary(s: dict, with_breakdown: bool = True) -> str:
    part = s.get("speed_counts")
    if isinstance(part, dict):         # a resumed run: the speed is that of the part that ran now
        lines = [f"cosim: completed {s['windows']} windows of {s['window_ms']:g} ms = {s['simulated_ms']:g} ms simulated; "
                 f"resumed from window {part['first_window']}: {part['windows']} windows = {part['simulated_ms']:g} ms "
                 f"in {s['wall_s']:.2f} s ({s['windows_per_s']:.0f} windows/s, real-time factor "
                 f"{s['real_time_factor']:.2f}, counting only the windows the resumed part ran)"]
    else:
        lines = [f"cosim: completed {s['windows']} windows of {s['window_ms']:g} ms = {s['simulated_ms']:g} ms simulated "
                 f"in {s['wall_s']:.2f} s ({s['windows_per_s']:.0f} windows/s, real-time factor {s['real_time_factor']:.2f})"]
    dur = s.get("duration_ms")
    if dur is not None and abs(s["simulated_ms"] - dur) > 1e-9 * max(dur, 1):
        lines.append(f"  run.duration_ms {dur:g} ms is not a whole number of windows: the run ends with its last "
                     f"window at {s['simulated_ms']:g} ms")
    t = s.get("timing", {})
    if "window_wall_ms" in t:
        lines.append(f"  per window: {t['window_wall_ms']:.3f} ms wall at the coordinator")
    if with_breakdown and s.get("breakdown"):
        from cosim.results.breakdown import format_breakdown
        lines.append(format_breakdown(s["breakdown"]))
    else:
        for node, v in t.items():
            if isinstance(v, dict):
                lines.append(f"  {node:>12}: compute {v['compute_ms']:.3f} ms, waiting {v['wait_ms']:.3f} ms per window")
    for node, counts in (s.get("rejected_data") or {}).items():
        if isinstance(counts, dict):
            what = ", ".join(f"{k} {v}" for k, v in counts.items())
            lines.append(f"  {node}: dropped data messages (PROTOCOL.md §4.1): {what}")
    lines += format_startup(s.get("startup"))
    lines.append(f"  results: {s['results_dir']}")
    return "\n".join(lines)


def format_startup(st) -> list[str]:
    """summary.json ``startup`` (cosim.runtime.startup) as lines: the wall time to the first window,
    then per service its time from its own start to its last set-up step, split in phases."""
    if not isinstance(st, dict) or not isinstance(st.get("services"), dict) or not isinstance(st.get("wall_s"), float | int):
        return []
    since = "the command" if st.get("from") == "command" else "the coordinator's start"
    lines = [f"  start-up: {st['wall_s']:.2f} s from {since} to the first window; per service, from its start (s):"]
    for name, r in st["services"].items():
        if not isinstance(r, dict) or not isinstance(r.get("phases"), dict):
            continue
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items()     # (under 5 ms: in summary.json only)
                          if isinstance(v, float | int) and v >= 0.005)
        total = r.get("total_s")
        lines.append(f"  {str(name):>12}: {total:.2f} = {parts}" if isinstance(total, float | int)
                     else f"  {str(name):>12}: {parts}")
    return lines


def report(run_dir: str | Path, as_json: bool = False, plot: bool = True) -> int:
    """`cosim report RUN_DIR`: the run's summary (if it finished) and where its time went."""
    import json
    out = Path(run_dir)
    if not (out / "coordinator.h5").exists():
        raise FileNotFoundError(f"{out}: no coordinator.h5 (not a run directory, or the run never started)")
    from cosim.results.breakdown import breakdown, format_breakdown, plot_breakdown
    b = breakdown(out)
    if as_json:
        print(json.dumps(b, indent=2))
        return 0
    s = out / "summary.json"
    if s.exists():
        print(format_summary(json.loads(s.read_text()), with_breakdown=False))
    else:
        print(f"cosim: {out}: no summary.json (the run did not complete); timing of the windows recorded:")
    print(format_breakdown(b))
    if plot:
        print(f"  plot: {plot_breakdown(out)}")
    return 0
