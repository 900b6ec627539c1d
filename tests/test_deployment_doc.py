"""docs/deployment.md §2 "Several machines without containers", run as written: its command block
is parsed (one part per `# machine X` comment, continuation lines joined) and each machine's
commands run, as root, in a network namespace of their own, with `machine-a` resolving to the
coordinator's namespace (`/etc/netns/<ns>/hosts`, which `ip netns exec` mounts over /etc/hosts).
Only the run config comes from the test (the doc says machine A holds it); an edit of the doc
that breaks a command (a flag, a variable, a port, an address) fails the run and this test."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

try:
    from tests.netns import Lab, available, leftovers
except ImportError:                      # tests/ is on sys.path, not the repository
    from netns import Lab, available, leftovers

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.netns, pytest.mark.tvb, pytest.mark.netpyne,
              pytest.mark.timeout(600)]
DOC = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"


def machine_commands(text: str) -> dict[str, list[str]]:
    """{"A": [command, …], "B": …} from §2's first ```bash block: a `# machine X` comment starts a
    machine's part; other comments are dropped; a trailing backslash joins the next line."""
    sec = text.split("## 2. Several machines without containers", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", sec, re.S)
    assert block, "deployment.md §2 has no ```bash block"
    out: dict[str, list[str]] = {}
    machine, pending = None, ""
    for raw in block.group(1).splitlines():
        line = raw.strip()
        m = re.match(r"#\s*machine\s+([A-Z])\b", line)
        if m:
            machine = m.group(1)
            out.setdefault(machine, [])
            continue
        if not line or line.startswith("#"):
            continue
        pending += line[:-1].strip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            assert machine, f"a command before any '# machine X' comment: {pending}"
            out[machine].append(pending)
            pending = ""
    return out


def test_the_block_parses_into_three_machines():
    cmds = machine_commands(DOC.read_text())
    assert sorted(cmds) == ["A", "B", "C"], cmds
    assert all(len(v) == 1 for v in cmds.values()), cmds
    assert "cosim coordinator" in cmds["A"][0] and "cosim tvb-node" in cmds["B"][0]
    assert "cosim spiking-node" in cmds["C"][0]


@pytest.fixture
def lab():
    why = available()
    if why:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    lab = Lab(3)
    made_root = not Path("/etc/netns").exists()
    hosts_files = []
    for h in lab.hosts:              # `machine-a` (and b, c) as a lab's DNS would give them
        d = Path("/etc/netns") / h.ns
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
            f"{x.ip} machine-{'abc'[x.index]}\n" for x in lab.hosts))
        hosts_files.append(d)
    yield lab
    lab.close()
    for d in hosts_files:
        shutil.rmtree(d, ignore_errors=True)
    if made_root:
        try:
            Path("/etc/netns").rmdir()
        except OSError:          # another lab's files are there now
            pass
    assert not [ns for ns in leftovers() if lab.id in ns], "namespaces left behind"


def test_section_2_runs_as_written_on_three_machines(lab, tmp_path):
    cmds = machine_commands(DOC.read_text())
    run_cfg = {"run": {"name": "doc", "duration_ms": 40.0, "seed": 3, "progress": False},
               "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71],
                                  "params": {"network": {"n_exc": 20, "n_inh": 6}}}],
               "coordinator": {"heartbeat_interval_ms": 500, "heartbeat_timeout_ms": 10000, "setup_timeout_ms": 90000}}
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    procs, dirs = {}, {}
    for name in "ABC":
        dirs[name] = tmp_path / f"machine-{name.lower()}"
        dirs[name].mkdir()
    (dirs["A"] / "run.yaml").write_text(yaml.safe_dump(run_cfg))      # "only machine A needs it"
    for h, name in zip(lab.hosts, "ABC"):
        # own host name too (UTS namespace): the coordinator names the address nodes use by it
        script = f"hostname machine-{name.lower()} && cd {shlex.quote(str(dirs[name]))} && {cmds[name][0]}"
        argv = ["unshare", "--uts", "bash", "-c", script]
        procs[name] = h.popen(argv, tmp_path / f"{name}.log", env=env)
        time.sleep(0.5)
    logs = lambda: "\n".join(f"--- machine {n}: {cmds[n][0]}\n" + (tmp_path / f"{n}.log").read_text()[-2500:]  # noqa: E731
                             for n in "ABC")
    deadline = time.monotonic() + 400
    while procs["A"].poll() is None:     # a node that exits at once (a broken command) fails now, not at the setup timeout
        assert time.monotonic() < deadline, logs()
        assert all(procs[n].poll() in (None, 0) for n in "BC"), logs()
        time.sleep(0.2)
    assert procs["A"].returncode == 0, logs()
    assert procs["B"].wait(timeout=60) == 0 and procs["C"].wait(timeout=60) == 0, logs()
    a = (tmp_path / "A.log").read_text()
    assert "tcp://machine-a:5555" in a, a[-2000:]            # the doc's "nodes connect to tcp://machine-a:5555"
    # each machine wrote its own results where the doc says (results/run1 in its working directory)
    with h5py.File(dirs["A"] / "results" / "run1" / "coordinator.h5", "r") as f:
        assert f.attrs.get("status") == "completed", dict(f.attrs)
    assert (dirs["B"] / "results" / "run1" / "tvb.h5").is_file(), logs()
    assert (dirs["C"] / "results" / "run1" / "spiking.h5").is_file(), logs()
    for n, file in (("B", "tvb.h5"), ("C", "spiking.h5")):
        assert re.search(rf"finished \d+ windows; results in \S*{file}", (tmp_path / f"{n}.log").read_text()), logs()
