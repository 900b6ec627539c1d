"""`cosim run CONFIG --out OUT [--no-plots]` as conftest.run_warm makes it in the test process
(cosim.launch.run.start, every service forked from one zygote: cosim.launch.starters.Warm), but in
a process of its own: ``python -m warm_run TIMEOUT CONFIG OUT [--no-plots]``, forked from
conftest's warm zygote (which has this folder on its path) for a config with a ``model_file`` node,
whose check loads the model (NEURON, its mechanisms) in the launcher: here, not in the test
process. The summary goes to stdout, ``cosim: REASON`` to stderr, the exit code is the run's; a run
still going after TIMEOUT s is stopped (its coordinator gets SIGTERM: it aborts, exit non-zero)."""
from __future__ import annotations

import argparse
import sys
import threading


def run(config: str, out: str, no_plots: bool, timeout: float) -> int:
    """One run as `cosim run` makes it, services forked from this process's zygote: the summary
    to stdout, ``cosim: REASON`` to stderr; the exit code. Also conftest.run_warm's, in the test
    process (the zygotes it started are the caller's to close)."""
    from cosim.errors import CosimError
    from cosim.launch import starters
    from cosim.launch.run import start
    from cosim.results.report import format_summary
    a = argparse.Namespace(config=config, set=[], out=out, no_plots=no_plots, log_level="INFO")
    try:
        job = start(a, starter=starters.Warm("INFO"))
        watchdog = threading.Timer(timeout, job.stop)
        watchdog.start()
        try:
            print(format_summary(job.supervise()))
        finally:
            watchdog.cancel()
            job.reap()
    except CosimError as e:
        print(f"cosim: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def main(argv: list[str]) -> int:
    from cosim.launch import starters
    timeout, config, out, *rest = argv
    try:
        return run(config, out, "--no-plots" in rest, float(timeout))
    finally:
        for z in list(starters._zygotes.values()):
            z.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
