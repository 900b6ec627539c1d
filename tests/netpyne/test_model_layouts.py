"""Issue 10: NetPyNE models in six common layouts run unchanged under `cosim run` with nothing
but a YAML mapping (tests/netpyne/models/*/cosim.yaml); each failure kind is one line + exit 2
from `cosim validate` and from `cosim run`, before any service starts."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.system, pytest.mark.netpyne, pytest.mark.tvb]
MODELS = Path(__file__).resolve().parent / "models"
LAYOUTS = ["tutorial", "srclayout", "rxd_json", "saved", "templates", "indexed"]
QUICK = {"templates"}    # -m "not slow": the layout with templates, mechanisms and plots


@pytest.fixture(scope="module")
def mech_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("nrnmech")


def cosim(args, cwd, cache, timeout=300):
    """`cosim ARGS` in `cwd`, forked from a zygote that imported NetPyNE, NEURON and TVB once
    (conftest.run_cli_warm: the real command, its exit code and its stdout/stderr apart): every
    command here loads a model in the launcher, 2-3 CPU-s of imports each when fresh."""
    from conftest import run_cli_warm
    return run_cli_warm(args, cwd, env={"COSIM_NRNMECH_CACHE": str(cache)}, timeout=timeout)


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


# The slow layouts run as the services of one `cosim run` (one TVB node, coordinator and launcher
# for all five: each run alone was ~8 of its ~10 CPU-s start-up), each on a region of its own, every
# service forked from one zygote (conftest.run_warm: NetPyNE, NEURON and TVB imported once, not
# once per node); the quick layout runs its own cosim.yaml as it is with `cosim run`, relative
# paths and all.
# regions connected in connectivity_76 (37, say, has no links: no drive, no spikes)
SHARED_REGIONS = {"tutorial": 33, "srclayout": 71, "rxd_json": 45, "saved": 29, "indexed": 42}


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory, mech_cache):
    """One run of the slow layouts: each layout's own cosim.yaml node (model path made absolute,
    its populations moved to its region, no plot), named after the layout. Returns (out, before, after,
    working folder, result): the layouts' folder trees around the run."""
    from conftest import run_warm
    work = tmp_path_factory.mktemp("layouts")
    before = {lay: tree(MODELS / lay) for lay in SHARED_REGIONS}
    nodes = []
    for lay, region in SHARED_REGIONS.items():
        node = yaml.safe_load((MODELS / lay / "cosim.yaml").read_text())["spiking_nodes"][0]
        mf = node["params"]["model_file"]
        mf["path"] = str(MODELS / lay / mf["path"])
        for pop in mf["populations"].values():
            pop["region"] = region
        node["params"]["record"] = {"plot": False}     # --no-plots is the coordinator's: no raster per node
        nodes.append({**node, "name": lay, "regions": [region]})
    cfg = {"run": {"name": "layouts", "duration_ms": 100.0}, "spiking_nodes": nodes}
    # launched from work/run (its working folder, beside its config.yaml), results in work/run/out
    r = run_warm({"run": cfg}, work, "--no-plots", env={"COSIM_NRNMECH_CACHE": str(mech_cache)})["run"]
    return r.out, before, {lay: tree(MODELS / lay) for lay in SHARED_REGIONS}, work / "run", r


def check_layout(layout: str, out: Path, node: str) -> None:
    """The node's populations have the roles of its mapping, and every exc/other population spiked."""
    mapping = yaml.safe_load((MODELS / layout / "cosim.yaml").read_text())["spiking_nodes"][0]["params"]["model_file"]
    with h5py.File(out / f"{node}.h5", "r") as f:
        labels = [x.decode() for x in f["pops/label"][:]]
        roles = [x.decode() for x in f["pops/role"][:]]
        counts = np.bincount(f["spikes/pop"][:], minlength=len(labels)) if "spikes/pop" in f else np.zeros(len(labels))
    assert any(r == "input" for r in roles)                        # the drive cosim attached (no input pop)
    for pop, m in mapping["populations"].items():
        assert roles[labels.index(pop)] == m["role"]
        if m["role"] in ("exc", "other"):                          # every population's spikes, role other too
            assert counts[labels.index(pop)] > 0, (pop, dict(zip(labels, counts.tolist())))
    log = (out / "logs" / f"{node}.log").read_text()
    if layout == "tutorial":
        assert "called sim.createSimulateAnalyze: took its netParams/simConfig; nothing was simulated" in log
        assert log.count("simConfig.recordLFP = [[50, 50, 50]] turned off") == 1


@pytest.mark.parametrize("layout", [p if p in QUICK else pytest.param(p, marks=pytest.mark.slow) for p in LAYOUTS])
def test_layout_runs_unchanged(layout, tmp_path, mech_cache, request):
    folder = MODELS / layout
    if layout not in QUICK:
        out, before, after, work, r = request.getfixturevalue("shared_run")
        assert r.code == 0, r.stderr[-3000:]
        assert after[layout] == before[layout], "the model wrote into its own folder"
        assert sorted(x.name for x in work.iterdir()) == ["config.yaml", "out"], "a model wrote into the working folder"
        check_layout(layout, out, layout)
        return
    before = tree(folder)
    p = cosim(["run", str(folder / "cosim.yaml"), "--out", str(tmp_path / "out")], tmp_path, mech_cache)  # plots on
    assert p.returncode == 0, p.stderr[-3000:]
    assert tree(folder) == before, "the model wrote into its own folder"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out"], "the model wrote into the working folder"
    check_layout(layout, tmp_path / "out", "spiking")
    assert (tmp_path / "out" / "spiking_spiking.png").stat().st_size > 10_000   # the quick layout draws the plots


def _broken_mod(d: Path) -> Path:
    (d / "mod").mkdir()
    (d / "mod" / "good.inc").write_text("UNITS { (mV) = (millivolt) }\n")
    (d / "mod" / "bad.mod").write_text('NEURON { SUFFIX bad RANGE g }\nINCLUDE "good.inc"\nPARAMETER { g = 1 }\n'
                                       "BREAKPOINT { g = = 2 }\n")
    return d


FAILURES = {   # kind -> (how to break the tutorial config, text the one line must contain)
    "missing model file": (lambda mf, d: mf.update(path=str(d / "nope.py")), "model_file.path: not found: '"),
    "unknown population": (lambda mf, d: mf["populations"].update(X={"region": 33, "role": "inh"}),
                           "population 'X' (in model_file.populations) is not in netParams.popParams"),
    "foreign region": (lambda mf, d: mf["populations"]["M"].update(region=12), "which this node does not simulate"),
    "missing region": (lambda mf, d: mf["populations"]["M"].update(region=500), "region 500, which does not exist"),
    "mod does not compile": (lambda mf, d: mf.update(mod_dir=str(_broken_mod(d) / "mod")), "bad.mod line 4"),
    "unknown drive synapse": (lambda mf, d: mf.update(drive={"synapse": "NMDA"}),
                              "drive.synapse 'NMDA' is not in the model's synMechParams"),
    "model raises": (lambda mf, d: (d / "m.py").write_text("import nosuchmodule\n") and mf.update(path=str(d / "m.py")),
                     "raised ModuleNotFoundError: No module named 'nosuchmodule' (at m.py line 1)"),
    "dt does not divide": (lambda mf, d: None, "params.dt_ms: 0.03 ms does not divide tvb.dt_ms"),
}

# -m "not slow": a missing file, a wrong mapping, a mod file that does not compile, a model that raises
QUICK_FAILURES = {"missing model file", "unknown population", "mod does not compile", "model raises"}


@pytest.mark.parametrize("kind", [k if k in QUICK_FAILURES else pytest.param(k, marks=pytest.mark.slow) for k in FAILURES])
def test_failure_is_one_line_and_exit_2_from_validate_and_run(kind, tmp_path, mech_cache):
    cfg = yaml.safe_load((MODELS / "tutorial" / "cosim.yaml").read_text())
    params = cfg["spiking_nodes"][0]["params"]
    params["model_file"]["path"] = str(MODELS / "tutorial" / "tut_hh.py")
    if kind == "dt does not divide":
        params["dt_ms"] = 0.03
    breaker, text = FAILURES[kind]
    breaker(params["model_file"], tmp_path)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for cmd in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "out")]):
        p = cosim(cmd, tmp_path, mech_cache, timeout=180)
        assert p.returncode == 2, (cmd[0], p.stderr[-2000:])
        lines = [ln for ln in p.stderr.splitlines() if ln.startswith("cosim") and "compiling mechanisms" not in ln]
        assert len(lines) == 1 and text in lines[0], (cmd[0], p.stderr[-2000:])
        assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()          # cosim run stopped before starting any service


@pytest.mark.slow
def test_unexpected_node_error_leaves_its_traceback_in_the_log(tmp_path, mech_cache):
    """A model that loads but breaks NetPyNE while the node builds it (a weight NetPyNE cannot
    evaluate): exit 1, one line that says where the traceback is, and the traceback there."""
    (tmp_path / "m.py").write_text(
        "from netpyne import specs\nnetParams = specs.NetParams()\n"
        "netParams.cellParams['C'] = {'secs': {'soma': {'geom': {'diam': 10, 'L': 10}, 'mechs': {'hh': {}}}}}\n"
        "netParams.popParams['E'] = {'cellType': 'C', 'numCells': 4}\n"
        "netParams.connParams['E->E'] = {'preConds': {'pop': 'E'}, 'postConds': {'pop': 'E'}, 'probability': 0.5,"
        " 'weight': '1/0', 'delay': 1}\n")
    cfg = {"run": {"duration_ms": 20.0},
           "spiking_nodes": [{"name": "spiking", "regions": [33], "params": {"model_file": {
               "path": str(tmp_path / "m.py"), "populations": {"E": {"region": 33, "role": "exc"}}}}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = cosim(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--no-plots"], tmp_path, mech_cache)
    assert p.returncode == 1, p.stderr[-2000:]
    log = tmp_path / "out" / "logs" / "spiking.log"
    assert f"full traceback in {log}" in p.stderr, p.stderr[-2000:]
    assert "Traceback (most recent call last)" in log.read_text() and "TypeError" in log.read_text()


def test_cosim_build_compiles_ahead_with_progress_then_finds_the_cache(tmp_path):
    cfg = str(MODELS / "templates" / "cosim.yaml")
    first = cosim(["build", cfg], tmp_path, tmp_path / "cache")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "cosim: spiking: compiling mechanisms 2/2" in first.stderr
    again = cosim(["build", cfg], tmp_path, tmp_path / "cache")
    assert again.returncode == 0 and "compiling" not in again.stderr


def test_unexpected_error_while_validating_names_its_traceback_file(tmp_path, mech_cache):
    """A model whose values break the loader in a way no check foresaw (numCells a string): one
    line, exit 2, and the traceback kept in the file that line names."""
    (tmp_path / "m.json").write_text('{"netParams": {"popParams": {"E": {"cellType": "C", "numCells": "ten"}}}}')
    cfg = {"spiking_nodes": [{"name": "spiking", "regions": [33], "params": {"model_file": {
        "path": str(tmp_path / "m.json"), "populations": {"E": {"region": 33, "role": "exc"}}}}}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    p = cosim(["validate", str(tmp_path / "c.yaml")], tmp_path, mech_cache)
    assert p.returncode == 2, p.stderr[-2000:]
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("cosim")]
    assert len(line) == 1 and "loading the model failed: TypeError" in line[0], p.stderr[-2000:]
    tb = Path(line[0].rsplit("full traceback in ", 1)[1].rstrip(")"))
    assert "Traceback (most recent call last)" in tb.read_text()
    tb.unlink()
