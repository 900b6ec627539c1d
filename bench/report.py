"""docs/performance.md and docs/perf_*.png from the suite's results (bench/run_all.py)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _f(x, d=2, unit=""):
    if x is None:
        return "–"
    try:
        return f"{x:.{d}f}{unit}"
    except (TypeError, ValueError):
        return str(x)


def _runs(xs, d=0) -> str:
    """The repeats of a figure, as the tables quote them: "225, 225, 215"."""
    return ", ".join(_f(x, d) for x in xs)


def _met(ok) -> str:
    return "–" if ok is None else ("**met**" if ok else "**not met**")


def summary_rows(R: dict) -> list[tuple]:
    rows = []
    if "protocol" in R:
        p = R["protocol"]
        base = (f"raw symmetric PUSH/PULL {_f(p['symmetric_us'], 0)} µs" if "symmetric_us" in p
                else f"raw ROUTER↔2×DEALER {_f(p['raw_round_trip_us'], 0)} µs")
        rows.append(("1 Protocol (noop nodes)", f"{_f(p['lockstep_per_window_us'], 0)} µs/window "
                     f"({_f(p['lockstep_windows_per_s'], 0)} windows/s)", base, _f(p["ratio"]), "≤ 1.5",
                     _met(p["ratio"] <= 1.5)))
        if "python_floor_us" in p:
            rows.append(("1 Protocol: Python floor (codec + value check + batched copies, no runtime)",
                         f"{_f(p['python_floor_us'], 0)} µs/window", base, _f(p["python_floor_ratio"]), "–", "–"))
    if "overlap" in R:
        o = R["overlap"]
        aim = o.get("aim_issue12", 1.10)
        slower = max(o['tvb_alone_s'], o['neuron_alone_s'])
        for m, bm in (o.get("by_lookahead") or {str(o.get("lookahead", 1)): {"loop_s": o["loop_s"], "ratio": o["ratio"]}}).items():
            rows.append((f"2 Overlap (default example, loop, lookahead {m})", f"{_f(bm['loop_s'])} s",
                         f"slower alone ({o['slower_alone']}) {_f(slower)} s", _f(bm["ratio"]), f"≤ {aim:g}",
                         _met(bm["ratio"] <= aim)))
    if "toolbox" in R:
        t = R["toolbox"]
        rows.append(("3 Toolbox config: loop", f"{_f(t['loop_s'])} s", "toolbox 61 s",
                     f"{_f(t['loop_speedup'], 1)}× faster", "≥ 8×", _met(t["loop_speedup"] >= 8)))
        if t.get("wall_speedup") is not None:
            rows.append(("3 Toolbox config: whole run", f"{_f(t['wall_total_s'])} s", "toolbox 72 s",
                         f"{_f(t['wall_speedup'], 1)}× faster", "≥ 5×", _met(t["wall_speedup"] >= 5)))
        for m, d in (t.get("by_lag") or {}).items():
            rows.append((f"3 Toolbox config: beyond the slower simulator, lookahead {m}",
                         f"{_f(d['beyond_slowest_ms'])} ms/window (runs "
                         f"{_runs(d['beyond_slowest_runs_ms'], 2)})",
                         f"slowest simulate {_f(d['slowest_simulate_ms'])} ms (loop {_f(d['loop_ms_per_window'])})",
                         "–", "≤ 1 ms", _met(d["beyond_slowest_ms"] <= 1.0)))
        if t.get("beyond_slowest_ms") is not None and not t.get("by_lag"):
            rows.append(("3 Toolbox config: beyond the slower simulator", f"{_f(t['beyond_slowest_ms'])} ms/window",
                         f"slowest simulate {_f(t['slowest_simulate_ms'])} ms (loop {_f(t['loop_ms_per_window'])})",
                         "–", "≤ 1 ms", _met(t["beyond_slowest_ms"] <= 1.0)))
    if "longrun" in R:
        lr = R["longrun"]
        g = lr.get("rss_growth_max")
        rows.append((f"4 Long run ({lr['windows']} windows of 1 step, {lr['backend']})",
                     f"RSS growth {_f(100 * g if g is not None else None, 2)} %, window time "
                     f"{_f(100 * lr['window_time_growth'], 1)} %", f"window {lr['rss_mark_window']}",
                     f"{_f(lr['window_us_early'], 0)} → {_f(lr['window_us_late'], 0)} µs", "< 5 %, flat",
                     _met(g is not None and g < 0.05 and lr["window_time_growth"] < 0.05
                          and lr.get("input_delivered", True))))
    if "scaling" in R:
        s = R["scaling"]
        c = [r for r in s["cells"] if "error" not in r and r["backend"] == "netpyne"]
        if len(c) > 1:
            q = c[-1]["ratio"]["us_per_sim_ms_per_cell"]
            rows.append((f"5 Scaling: NetPyNE µs per simulated ms per cell, {c[0]['cells_per_region']:,} → "
                         f"{c[-1]['cells_per_region']:,} cells per region",
                         f"{c[0]['us_per_sim_ms_per_cell']:.1f} → {c[-1]['us_per_sim_ms_per_cell']:.1f}",
                         "160 cells per region", f"× {q:.2f}", "flat", _met(q < 1.5)))
    if "distance" in R:
        d = R["distance"]
        for r in d["rows"]:
            if "aim_ms" in r:       # protocol 3
                rows.append((f"6 Distance L = {r['latency_ms']:g} ms (m = 1)", f"{_f(r['per_window_ms'])} ms/window",
                             f"compute + 1.1 L = {_f(r['aim_ms'], 1)} ms; L = 0 run {_f(d['rows'][0]['per_window_ms'])} ms",
                             _f(r["ratio_to_aim"]), "≤ compute + 1.1 L",
                             f"{_met(r['met'])} (latency cost {_f(r.get('latency_cost_ms'))} ms: "
                             f"{_met(r.get('met_vs_local'))} vs 1.1 L)"))
                continue
            if not r["latency_ms"]:
                continue
            rows.append((f"6 Distance L = {r['latency_ms']:g} ms", f"{_f(r['per_window_ms'])} ms/window",
                         f"compute + L = {_f(r['floor_direct_ms'], 1)} ms",
                         _f(r["ratio_to_direct_floor"]), "(floor)",
                         f"pays {_f(r.get('hops_paid'), 1)} hops"))
        e = d.get("example")
        if e:
            M = e["lookahead"]
            for m in sorted({1, M}):
                a, b = e["runs"][f"m{m}_L0"], e["runs"][f"m{m}_L{e['L_ms']:g}"]
                rows.append((f"6 Distance, default example, L = {e['L_ms']:g} ms, lookahead {m}", f"loop {_f(b['loop_s'])} s",
                             f"L = 0, same m: {_f(a['loop_s'])} s", _f(e[f"ratio_m{m}"]), "≤ 1.25" if m == M else "(m = 1)",
                             _met(e[f"ratio_m{m}"] <= 1.25) if m == M else "–"))
    if "security" in R:
        s = R["security"]
        rows.append(("7 CURVE: protocol", f"{_f(s['protocol']['lockstep_per_window_us'], 0)} µs/window",
                     f"raw {_f(s['protocol']['raw_round_trip_us'], 0)} µs", _f(s["protocol_ratio"]), "≤ 1.5",
                     _met(s["protocol_ratio"] <= 1.5)))
        if "overlap" in s:
            rows.append(("7 CURVE: overlap", f"{_f(s['overlap']['loop_s'])} s",
                         f"slower alone {_f(max(s['overlap']['tvb_alone_s'], s['overlap']['neuron_alone_s']))} s",
                         _f(s["overlap_ratio"]), "≤ 1.10", _met(s["overlap_ratio"] <= 1.10)))
    if "startup" in R:
        s = R["startup"]
        r = s["run"]
        floor = s["floor_netpyne_s"] if s.get("floor_netpyne_s") else s["floor_tvb_s"]
        ratio = r["startup_plus_teardown_over_floor"]
        rows.append((f"8 Start-up + tear-down ({s['backend']})", f"{_f(r['startup_s'])} + {_f(r['teardown_s'])} s",
                     f"slowest service's bare imports {_f(floor)} s", _f(ratio), "≤ 1.5", _met(ratio <= 1.5)))
        w = s["sweep_warm"]
        rows.append((f"8 Sweep, warm workers, later runs ({s['backend']})", f"loop + {_f(w['later_overhead_median_s'])} s",
                     f"cold: loop + {_f(s['sweep_cold']['later_overhead_median_s'])} s",
                     _f(s["warm_over_cold_later_runs"]), "loop + 1 s", _met(w["later_overhead_median_s"] <= 1.0)))
    return rows


def _plots(R: dict, docs: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(docs / name, dpi=100)
        plt.close(fig)
        made.append(name)

    if "protocol" in R:
        p = R["protocol"]
        fig, ax = plt.subplots(figsize=(6, 2.6))
        bars = [("raw pyzmq round trip", p["raw_round_trip_us"]), ("cosim lockstep window", p["lockstep_per_window_us"])]
        ref = p["raw_round_trip_us"]
        if "symmetric_us" in p:      # protocol 3: the floor is the symmetric exchange
            bars = [("raw symmetric PUSH/PULL", p["symmetric_us"]), ("cosim window (protocol 3)", p["lockstep_per_window_us"]),
                    ("raw ROUTER↔2 DEALER (protocol 2 floor)", p["raw_round_trip_us"])]
            if "python_floor_us" in p:
                bars.insert(1, ("Python floor (codec, checks, copies)", p["python_floor_us"]))
            ref = p["symmetric_us"]
        if "security" in R:
            sp = R["security"]["protocol"]
            bars += [("raw (CURVE run)", sp["raw_round_trip_us"]), ("cosim lockstep, CURVE", sp["lockstep_per_window_us"])]
        ax.barh([b[0] for b in bars], [b[1] for b in bars],
                color=(["#999", "#8c8cc0", "#4c72b0", "#bbb", "#c44e52", "#dd8452"] if "python_floor_us" in p
                       else ["#999", "#4c72b0", "#bbb", "#c44e52"])[:len(bars)])
        ax.axvline(1.5 * ref, color="k", ls="--", lw=0.8, label="aim: 1.5 × raw")
        ax.set_xlabel("µs per window (median of repeats)")
        ax.legend(fontsize=7)
        ax.invert_yaxis()
        save(fig, "perf_protocol.png")
    if "distance" in R:
        d = R["distance"]["rows"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        L = [r["latency_ms"] for r in d]
        if "aim_ms" in d[0]:        # protocol 3
            M = d[0]["lookahead"]
            ax.plot(L, [r["per_window_ms"] for r in d], "ko-", label="measured, lookahead 1")
            ax.plot(L, [r["per_1_6ms_simulated_m_ms"] for r in d], "bs-", label=f"measured, lookahead {M} (per 1.6 ms simulated)")
            ax.plot(L, [r["aim_ms"] for r in d], "--", label="aim: compute + 1.1 L")
            ax.plot(L, [r["chain_floor_ms"] for r in d], ":", label="floor, m = 1: max(C, L + C/2)")
        else:
            ax.plot(L, [r["per_window_ms"] for r in d], "ko-", label="measured")
            ax.plot(L, [r["floor_via_coordinator_ms"] for r in d], "--", label="compute + 2 L (via coordinator)")
            ax.plot(L, [r["floor_direct_ms"] for r in d], ":", label="compute + L (node to node)")
        ax.set_xlabel("one-way latency L (ms)")
        ax.set_ylabel("ms per window")
        ax.legend(fontsize=7)
        save(fig, "perf_distance.png")
    if "longrun" in R:
        lr = R["longrun"]
        tr = lr.get("rss_trace") or []
        if tr:
            fig, ax = plt.subplots(figsize=(6, 3.2))
            keys = sorted({k for t in tr for k in t if k != "window"})
            for k in keys:
                pts = [(t["window"], t[k] / 1024) for t in tr if k in t and t["window"] >= 0]
                if pts:
                    ax.plot(*zip(*pts), label=k)
            ax.axvline(lr["rss_mark_window"], color="k", lw=0.5, ls="--")
            ax.set_xlabel("window")
            ax.set_ylabel("RSS (MiB)")
            ax.legend(fontsize=7)
            save(fig, "perf_longrun.png")
    return made


def _breakdowns(R: dict, docs: Path) -> list[tuple[str, dict, str]]:
    from cosim.results.breakdown import breakdown, plot_breakdown
    out = []
    for key, label in (("overlap", "default example (500 ms, 4.9 ms windows)"),
                       ("toolbox", "toolbox configuration (1000 ms, 1.6 ms windows, NEURON dt 0.05)"),
                       ("longrun", "long run (one TVB step per window)")):
        run = (R.get(key) or {}).get("example_run") or (R.get(key) or {}).get("out")
        if not run or not (Path(run) / "coordinator.h5").exists():
            continue
        try:
            b = breakdown(run)
            name = f"perf_breakdown_{key}.png"
            plot_breakdown(run, docs / name, title=f"where the time goes: {label}")
            out.append((label, b, name))
        except Exception as e:  # a missing timing field in an old run must not lose the report
            out.append((label, {"error": str(e)}, ""))
    return out


def write_report(R: dict, info: dict, docs: Path) -> Path:
    from cosim.results.breakdown import format_breakdown
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    plots = _plots(R, docs)
    bds = _breakdowns(R, docs)
    m = info["machine"]
    L = ["# Performance", "",
         "Generated by `python bench/run_all.py` (the whole suite, one command; raw figures in "
         "`bench/results/*.json`). Every ratio is against a baseline measured in the same run on the "
         "same machine; figures are medians of repeats.", "",
         f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, kernel {m['kernel']}; "
         + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f". Commit {m['commit']}, {m['date']}. "
         f"Size `{info['size']}`; suite took {info.get('elapsed_s', 0) / 60:.1f} min; 1-minute load average "
         f"{info['load_avg_start']:.2f} at the start, {info.get('load_avg_end', 0):.2f} at the end.", ""]
    if info.get("errors"):
        L += ["**Benchmarks that failed in this run:** " + "; ".join(f"{k}: {v}" for k, v in info["errors"].items()), ""]
    L += ["## Summary", "", "| benchmark | measured | baseline (same run) | ratio | aim | |", "|---|---|---|---|---|---|"]
    L += [f"| {' | '.join(r)} |" for r in summary_rows(R)]
    L += [""]
    if "protocol" in R and "symmetric_us" in R["protocol"]:       # protocol 3
        p = R["protocol"]
        L += ["## 1. Protocol overhead", "",
              f"Noop nodes (TVB role + one spiking node, 2 regions, lookahead {p.get('lookahead', 1)}), {p['windows']} "
              f"windows × {p['repeats']} repeats, interleaved with the raw baselines. Protocol 3 sends each window's "
              "data straight from node to node (one DATA each way; the coordinator grants windows far ahead and gets "
              "STEP_DONE copies off the critical path), so the floor is a **symmetric PUSH/PULL exchange**: two "
              "processes, each PUSHing to the other's PULL the very frames of a window's DATA message "
              f"({' and '.join(str(b) for b in p['data_message_bytes'])} B) and waiting for the other's. No protocol with "
              "direct data can do a window in less: each window needs one message each way between the two nodes.", "",
              f"- raw symmetric exchange: {_f(p['symmetric_us'], 0)} µs per iteration (runs: "
              f"{_runs(p['symmetric_runs_us'], 0)})",
              f"- cosim per window: {_f(p['lockstep_per_window_us'], 0)} µs (runs: "
              f"{_runs(p['lockstep_runs_us'], 0)}); {_f(p['lockstep_windows_per_s'], 0)} windows/s",
              f"- ratio **{_f(p['ratio'])}** (aim ≤ 1.5); against protocol 2's floor (ROUTER ↔ 2 DEALER round trip, "
              f"{_f(p['raw_round_trip_us'], 0)} µs, same run): {_f(p['ratio_vs_round_trip'])}", ""]
        if "python_floor_us" in p:
            L += [f"- Python floor (each node only decodes and validates the other's DATA with the project's codec, "
                  f"checks its values, encodes and sends its own; batched copies to a third process): "
                  f"{_f(p['python_floor_us'], 0)} µs (runs: {_runs(p['python_floor_runs_us'], 0)}), "
                  f"{_f(p['python_floor_ratio'])}× the raw exchange; cosim is {_f(p['ratio_vs_python_floor'])}× it", ""]
    elif "protocol" in R:
        p = R["protocol"]
        L += ["## 1. Protocol overhead", "",
              f"Noop nodes (TVB role + one spiking node, 2 regions, {p['payload_bytes']} B of signals per message), "
              f"{p['windows']} windows × {p['repeats']} repeats, interleaved with the raw baseline: a ROUTER exchanging "
              "one message with each of 2 DEALER echo processes (pyzmq, same payload).", "",
              f"- raw round trip: {_f(p['raw_round_trip_us'], 0)} µs (runs: {_runs(p['raw_runs_us'], 0)})",
              f"- cosim loop per window: {_f(p['lockstep_per_window_us'], 0)} µs (runs: "
              f"{_runs(p['lockstep_runs_us'], 0)}); "
              f"{_f(p['lockstep_windows_per_s'], 0)} windows/s",
              f"- ratio **{_f(p['ratio'])}** (aim ≤ 1.5); the coordinator's median window wall alone "
              f"(STEP out → last STEP_DONE in, without recording between windows): "
              f"{_f(p['lockstep_window_median_us'], 0)} µs, ratio {_f(p['ratio_window_median'])}", ""]
    if "protocol" in R and "perf_protocol.png" in plots:
        L += ["![protocol](perf_protocol.png)", ""]
    if "overlap" in R:
        o = R["overlap"]
        L += ["## 2. Overlap: the default example against each simulator alone", "",
              f"Default example (76 regions, regions 33 and 71 with 120 E + 40 I HH cells, NEURON dt 0.025 ms), "
              f"{o['duration_ms']:g} ms, {o['windows']} windows of {o['window_ms']:g} ms, {o['repeats']} repeats. "
              "TVB alone = tvb-library's own Simulator (Raw + TemporalAverage); NEURON alone = the same NetPyNE "
              "network fed the very input the co-simulation gave it, one psolve to the end.", "",
              "| | s (median) |", "|---|---|",
              f"| co-simulation loop | {_f(o['loop_s'])} |", f"| TVB alone | {_f(o['tvb_alone_s'])} |",
              f"| NEURON alone | {_f(o['neuron_alone_s'])} |",
              f"| spiking adapter windowed, no sockets | {_f(o['windowed_alone_s'])} |",
              f"| whole `cosim run` (start → exit) | {_f(o['wall_total_s'])} |",
              f"| TVB alone, whole process | {_f(o['tvb_alone_process_s'])} |",
              f"| NEURON alone, whole process | {_f(o['neuron_alone_process_s'])} |",
              *[f"| co-simulation loop, lookahead {m} ({bm['windows']} windows of {bm['window_ms']:g} ms) | "
                f"{_f(bm['loop_s'])} (ratio {_f(bm['ratio'])}) |" for m, bm in (o.get("by_lookahead") or {}).items()
                if str(m) != str(o.get("lookahead", 1))], "",
              f"Ratio loop / slower alone: **{_f(o['ratio'])}** (aim ≤ {o.get('aim_issue12', 1.10):g}); loop / (TVB + NEURON alone, i.e. run "
              f"one after the other): {_f(o['ratio_vs_sum'])}; whole run / slower whole process: "
              f"{_f(o['ratio_whole_vs_slower_process'])}.", ""]
    if "toolbox" in R:
        t = R["toolbox"]
        L += ["## 3. The reference toolbox's configuration", "",
              f"76 regions, regions 33 and 71 (120 E + 40 I each), NEURON dt 0.05 ms, TVB dt 0.1 ms, window 1.6 ms "
              f"(`run.window_ms: 1.6`), {t['duration_ms']:g} ms = {t['windows']} windows; {t['repeats']} repeats.", "",
              "| | toolbox (published) | cosim (median) | speed-up |", "|---|---|---|---|",
              f"| co-simulation loop | 61 s | {_f(t['loop_s'])} s | {_f(t['loop_speedup'], 1)}× (aim ≥ 8×) |",
              f"| whole run | 72 s | {_f(t['wall_total_s'])} s | {_f(t.get('wall_speedup'), 1)}× (aim ≥ 5×) |",
              f"| NEURON alone | ~6 s | {_f(t['neuron_alone_s'])} s | |",
              f"| TVB alone | ~2 s | {_f(t['tvb_alone_s'])} s | |", "",
              (f"With the window our coordinator picks by itself for this configuration ({t['auto_window']['window_ms']:g} ms: "
               f"the smallest delay between regions 33/71 and the rest; self-connections never set it), "
               f"{t['auto_window']['windows']} windows: loop {_f(t['auto_window']['loop_s'])} s, whole run "
               f"{_f(t['auto_window']['wall_total_s'])} s. " if t.get("auto_window") else "") +
              f"Real-time factor {_f(t['real_time_factor'])}; loop / our slower simulator alone "
              f"{_f(t['loop_vs_our_slower_alone'])}. Build times: "
              + "; ".join(f"{k} {_f(v, 1)} s" for k, v in t["runs"][0]["build_s"].items()) + ".", ""]
        if t.get("beyond_slowest_ms") is not None:
            L += [f"Per window (`cosim.results.breakdown`, medians of the repeats): loop {_f(t['loop_ms_per_window'], 3)} ms, "
                  f"slowest simulator's own integration {_f(t['slowest_simulate_ms'], 3)} ms, **beyond it "
                  f"{_f(t['beyond_slowest_ms'], 3)} ms** (aim ≤ 1 ms; runs: "
                  f"{_runs(t['beyond_slowest_runs_ms'], 3)}).", ""]
        if t.get("traced"):
            from bench.trace import text
            L += ["Per-message trace of one more run (`--trace`, COSIM_TRACE; columns: bench/trace.py):", "", "```",
                  text(t["traced"]["analysis"]), "```", ""]
    if bds:
        L += ["## Where the time goes", "",
              "Every run records per-window timings (`coordinator.h5` `timing/*`); `cosim.results.breakdown` splits each "
              "window per service into simulate (the simulator's own integration), transform (the adapter's "
              "other work: transformers, proxies, coupling, recording), serialize (codec), wait (idle), and for "
              "the coordinator network (wall minus the slowest node's busy time) and recording. The run summary "
              "prints it; `python -m cosim.results.breakdown RUN_DIR` prints it for any run and draws the plot.", ""]
        for label, b, img in bds:
            L += [f"**{label}**", ""]
            if "error" in b:
                L += [f"(no breakdown: {b['error']})", ""]
                continue
            L += ["```", format_breakdown(b), "```", ""]
            if img:
                L += [f"![breakdown]({img})", ""]
    if "longrun" in R:
        lr = R["longrun"]
        L += ["## 4. Long runs", "",
              f"{lr['windows']} windows of one TVB step (window = dt = 0.1 ms), backend {lr['backend']}; "
              f"loop {_f(lr['loop_s'])} s, whole run {_f(lr['wall_total_s'])} s.", "",
              "| process | RSS at window " + f"{lr['rss_mark_window']} (MiB) | RSS at window {lr['rss_end_window']} (MiB) | growth |",
              "|---|---|---|---|"]
        for k, v in lr["rss_kb_at_mark"].items():
            e = lr["rss_kb_at_end"].get(k)
            L.append(f"| {k} | {v / 1024:.1f} | {_f(e / 1024 if e else None, 1)} | "
                     f"{_f(100 * lr['rss_growth'].get(k, float('nan')), 2)} % |")
        L += ["", f"Time per window: median {_f(lr['window_us_early'], 0)} µs (windows {lr['rss_mark_window']}–"
              f"{2 * lr['rss_mark_window']}) → {_f(lr['window_us_late'], 0)} µs (last {lr['rss_mark_window']}).", ""]
        if "input_spikes" in lr:
            L += [f"Input delivered with one-step windows: {lr['input_spikes']} input spikes, mean input rate "
                  f"{_f(lr['input_rate_hz_mean'])} Hz, mean E rate {_f(lr['exc_rate_hz_mean'])} Hz, "
                  f"{lr['spikes']} spikes.", ""]
        if "perf_longrun.png" in plots:
            L += ["![long run memory](perf_longrun.png)", ""]
    if "scaling" in R:
        from bench.scaling import table as scaling_table
        L += ["## 5. Scaling", ""] + scaling_table(R["scaling"]) + [""]
    if "distance" in R and "aim_ms" in R["distance"]["rows"][0]:       # protocol 3
        d = R["distance"]
        M = d["lookahead"]
        L += ["## 6. Distance", "", f"{d['deployment']}; the spiking node computes {d['compute_ms']:g} ms per 1.6 ms "
              "window (noop node, sleep; TVB noop computes nothing); one-way latency added by userspace TCP delay "
              "proxies (`bench/delay_proxy.py`); L = 0 goes through the same proxies with no delay. Per window: mean "
              f"of the coordinator's window walls after the first. Lookahead {M}: windows {M}× shorter, "
              f"{d['compute_ms'] / M:g} ms of compute each.", "",
              f"| L (ms) | m = 1 ms/window | aim compute + 1.1 L | | latency cost vs L = 0 | floor max(C, L + C/2) | "
              f"m = {M}: ms/window | m = {M}: ms per 1.6 ms simulated |", "|---|---|---|---|---|---|---|---|"]
        for r in d["rows"]:
            L.append(f"| {r['latency_ms']:g} | {_f(r['per_window_ms'])} | {_f(r['aim_ms'], 1)} | {_met(r['met'])} | "
                     f"{_f(r.get('latency_cost_ms'))} | {_f(r['chain_floor_ms'], 1)} | {_f(r['per_window_m_ms'])} | "
                     f"{_f(r['per_1_6ms_simulated_m_ms'])} |")
        r0 = d["rows"][0]
        if "direct_per_window_ms" in r0:
            L += ["", f"Without proxies (L = 0, direct): {_f(r0['direct_per_window_ms'])} ms per window."]
        e = d.get("example")
        if e:
            L += ["", f"Default example (real TVB + NetPyNE, {e['duration_ms']:g} ms), spiking node L away on every link, "
                  f"{e['repeats']} repeats:", "", "| lookahead | L (ms) | windows | loop (s) | ms/window |", "|---|---|---|---|---|"]
            for k, v in e["runs"].items():
                m, lat = k[1:].split("_L")
                L.append(f"| {m} | {lat} | {v['windows']} | {_f(v['loop_s'])} | {_f(v['per_window_ms'])} |")
            L += ["", f"Loop at L = {e['L_ms']:g} ms over L = 0: lookahead 1 {_f(e['ratio_m1'])}, lookahead {M} "
                  f"**{_f(e[f'ratio_m{M}'])}** (aim ≤ 1.25: {_met(e['met'])})."]
        L += [""]
        if "perf_distance.png" in plots:
            L += ["![distance](perf_distance.png)", ""]
    elif "distance" in R:
        d = R["distance"]
        L += ["## 6. Distance", "", f"{d['deployment']}; the spiking node computes {d['compute_ms']:g} ms per window "
              "(noop node, sleep); one-way latency added by a userspace TCP delay proxy (`bench/delay_proxy.py`).", "",
              "| L (ms) | measured ms/window | compute + L (node-to-node floor) | compute + 2 L (via coordinator) | "
              "latency cost vs L = 0 | hops paid |", "|---|---|---|---|---|---|"]
        for r in d["rows"]:
            L.append(f"| {r['latency_ms']:g} | {_f(r['per_window_ms'])} | {_f(r['floor_direct_ms'], 1)} | "
                     f"{_f(r['floor_via_coordinator_ms'], 1)} | {_f(r.get('latency_cost_ms'))} | {_f(r.get('hops_paid'), 2)} |")
        L += [""]
        if "perf_distance.png" in plots:
            L += ["![distance](perf_distance.png)", ""]
    if "security" in R:
        s = R["security"]
        L += ["## 7. Security cost (CURVE)", "",
              f"- protocol with CURVE: {_f(s['protocol']['lockstep_per_window_us'], 0)} µs per window against a raw "
              f"round trip of {_f(s['protocol']['raw_round_trip_us'], 0)} µs (same run): ratio "
              f"**{_f(s['protocol_ratio'])}**; against the plain protocol figure of this suite run: "
              f"{_f(s.get('protocol_cost_vs_plain'))}×."]
        if "overlap" in s:
            L += [f"- default example with CURVE: loop {_f(s['overlap']['loop_s'])} s, ratio to the slower simulator "
                  f"alone **{_f(s['overlap_ratio'])}**; against the plain loop: {_f(s.get('overlap_cost_vs_plain'))}×."]
        L += [""]
    if "startup" in R:
        from cosim.results.report import format_startup
        s = R["startup"]
        r = s["run"]
        L += ["## 8. Start-up and sweeps", "",
              f"`bench/startup.py`: the default example's regions on the {s['backend']} backend, {s['duration_ms']:g} ms. "
              f"Floors (bare imports, same run): TVB {_f(s['floor_tvb_s'])} s, NetPyNE {_f(s.get('floor_netpyne_s'))} s, "
              f"`cosim.cli` {_f(s['floor_cosim_cli_s'])} s.", "",
              f"- `cosim run`: {_f(r['total_s'])} s = start-up {_f(r['startup_s'])} + loop {_f(r['loop_s'])} + "
              f"tear-down {_f(r['teardown_s'])}; (start-up + tear-down) / the slowest floor "
              f"**{_f(r['startup_plus_teardown_over_floor'])}** (aim ≤ 1.5)",
              "- where the start-up went, as `cosim run` reports it (summary.json `startup`):", "", "```",
              *format_startup(r.get("startup_reported")), "```", ""]
        for kind, what in (("sweep_cold", "cold (every service a fresh process)"), ("sweep_warm", "warm (forked)")):
            w = s[kind]
            L.append(f"- sweep of {len(w['wall_s'])} runs, {what}: first run {_f(w['first_run_s'])} s, later runs "
                     f"median {_f(w['later_runs_median_s'])} s (loop + {_f(w['later_overhead_median_s'])} s)")
        L += [f"- warm / cold, later runs: **{_f(s['warm_over_cold_later_runs'])}**", ""]
    notes = REPO / "bench" / "notes.md"
    if notes.exists():
        L += [notes.read_text().strip(), ""]
    path = docs / "performance.md"
    path.write_text("\n".join(L) + "\n")
    return path
