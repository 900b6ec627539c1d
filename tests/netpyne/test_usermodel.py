"""User models: loading, mapping, .mod compilation, and one-line errors before the run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from np_helpers import run

pytestmark = [pytest.mark.netpyne]      # in-process

EXAMPLE = Path(__file__).resolve().parents[2] / "services" / "netpyne_node" / "examples" / "user_model"
MAP = {"drive": {"region": 33, "role": "input"}, "PYR": {"region": 33, "role": "exc"},
       "BAS": {"region": 33, "role": "inh"}}


def _params(path, tmp_path, populations=None):
    return {"model_file": {"path": str(path), "populations": populations or MAP, "build_dir": str(tmp_path / "build")},
            "input": {"scale": 0.1}, "record": {"plot": False}}


def _configure(params, regions=(33,)):
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    from cosim.services.netpyne_node.drive import make_context
    NetpyneAdapter(params).configure(make_context(regions, params, 10.0))


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg and len(msg) < 300, msg
    return msg


def test_user_model_with_custom_mod_runs_and_is_cached(tmp_path):
    ad, ctx, res = run(_params(EXAMPLE / "model.py", tmp_path), duration_ms=100.0, level=300.0)
    assert res["state/R_e"].mean() > 1.0
    builds = list((tmp_path / "build").iterdir())
    assert len(builds) == 1                                  # one content-hashed build
    from cosim.services.netpyne_node.mechanisms import compile_mods
    assert compile_mods(EXAMPLE, tmp_path / "build") == builds[0]   # cached, no recompilation


def test_model_without_netparams(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    from cosim.services.netpyne_node.mechanisms import ModelError
    with pytest.raises(ModelError) as ei:
        _configure(_params(tmp_path / "m.py", tmp_path))
    assert "does not define netParams" in _one_line(ei)


def test_json_model_and_unknown_population(tmp_path):
    (tmp_path / "m.json").write_text('{"netParams": {"popParams": {"A": {"cellModel": "NetStim", "numCells": 2}}}}')
    from cosim.services.netpyne_node.mechanisms import ModelError
    with pytest.raises(ModelError) as ei:
        _configure(_params(tmp_path / "m.json", tmp_path))
    assert "'drive'" in _one_line(ei) and "not in netParams.popParams" in str(ei.value)


def test_population_mapped_to_missing_or_foreign_region(tmp_path):
    from cosim.services.netpyne_node.mechanisms import ModelError
    bad = dict(MAP, BAS={"region": 500, "role": "inh"})
    with pytest.raises(ModelError) as ei:
        _configure(_params(EXAMPLE / "model.py", tmp_path, bad))
    assert "region 500, which does not exist" in _one_line(ei)
    bad = dict(MAP, BAS={"region": 12, "role": "inh"})
    with pytest.raises(ModelError) as ei:
        _configure(_params(EXAMPLE / "model.py", tmp_path, bad))
    assert "region 12, which this node does not simulate" in _one_line(ei)


def test_broken_mod_file_fails_in_one_line(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    shutil.copy(EXAMPLE / "model.py", d / "model.py")
    (d / "broken.mod").write_text("NEURON { SUFFIX broken RANGE g }\nPARAMETER { g = 1 \nBREAKPOINT { x = = 2 }\n")
    from cosim.services.netpyne_node.mechanisms import ModelError
    with pytest.raises(ModelError) as ei:
        _configure(_params(d / "model.py", tmp_path))
    assert "broken.mod line 3" in _one_line(ei)
    assert not [p for p in (tmp_path / "build").iterdir() if not p.name.startswith("build-")]


def test_cxx_error_is_traced_back_to_the_mod_line(tmp_path):
    """A .mod written for NEURON 7 (C) that NEURON 9's C++ compiler refuses: the message names the
    .mod file and the line of the VERBATIM code, not the generated .cpp."""
    from cosim.services.netpyne_node.mechanisms import ModelError, compile_mods
    d = tmp_path / "mod"
    d.mkdir()
    shutil.copy(Path(__file__).parent / "models" / "srclayout" / "mod" / "legacy_c.mod", d)
    with pytest.raises(ModelError) as ei:
        compile_mods(d, tmp_path / "build")
    assert "legacy_c.mod line 6: invalid conversion from" in _one_line(ei)


def test_drive_attached_to_a_seeded_fraction_with_several_sources():
    from netpyne import specs
    from cosim.services.netpyne_node.config import UserModel
    from cosim.services.netpyne_node.usermodel import DRIVE_SYN, attach_drive

    def drive(seed):
        net = specs.NetParams()
        net.popParams["E"] = {"cellType": "C", "numCells": 10}
        net.popParams["I"] = {"cellType": "C", "numCells": 4}
        um = UserModel(path="m.py", populations={"E": {"region": 3, "role": "exc"}, "I": {"region": 3, "role": "inh"}},
                       drive={"fraction": 0.5, "sources_per_cell": 3, "weight_uS": 0.01})
        return net, attach_drive(net, um, seed)
    net, added = drive(1)
    assert added == {"cosim_drive_E": (3, "input")}                # inh not driven unless asked
    assert net.popParams["cosim_drive_E"]["numCells"] == 15        # 5 of 10 cells x 3 sources
    conns = net.connParams["cosim_drive_E->E"]["connList"]
    targets = sorted({t for _, t in conns})
    assert len(targets) == 5 and sorted(s for s, _ in conns) == list(range(15))
    assert all(sum(t == x for _, x in conns) == 3 for t in targets)
    assert net.connParams["cosim_drive_E->E"]["synMech"] == DRIVE_SYN and DRIVE_SYN in net.synMechParams
    assert drive(1)[0].connParams["cosim_drive_E->E"]["connList"] == conns       # seeded
    assert drive(2)[0].connParams["cosim_drive_E->E"]["connList"] != conns


def test_model_runs_in_its_folder_and_leaves_nothing_behind(tmp_path):
    """src/netParams.py does `from cfg import cfg`: it loads with its folder as cwd and first on
    sys.path; afterwards cwd, sys.path, sys.argv are restored and its `cfg` module is forgotten."""
    import os
    import sys
    from cosim.services.netpyne_node.usermodel import _read
    path = Path(__file__).parent / "models" / "srclayout" / "src" / "netParams.py"
    cwd, syspath, argv = os.getcwd(), list(sys.path), list(sys.argv)
    net, cfg = _read(path)
    assert sorted(net.popParams) == ["Epop", "Ipop"] and cfg.gleak == 3e-4     # cfg came from src/cfg.py
    assert (os.getcwd(), sys.path, sys.argv) == (cwd, syspath, argv)
    assert "cfg" not in sys.modules


def test_build_cache_key_covers_includes(tmp_path):
    from cosim.services.netpyne_node.mechanisms import build_path
    src = Path(__file__).parent / "models" / "srclayout" / "mod"
    d = tmp_path / "mod"
    shutil.copytree(src, d)
    a = build_path(d, tmp_path / "b", ["legacy_*.mod"])
    assert a == build_path(d, tmp_path / "b", ["legacy_*.mod"])
    assert a != build_path(d, tmp_path / "b")                                  # excluded files are not sources
    (d / "kleak_units.inc").write_text((d / "kleak_units.inc").read_text() + ": changed\n")
    assert build_path(d, tmp_path / "b", ["legacy_*.mod"]) != a


def test_drive_only_where_a_region_has_no_input_population(tmp_path):
    mapping = {"drive": {"region": 33, "role": "input"}, "PYR": {"region": 33, "role": "exc"},
               "BAS": {"region": 71, "role": "exc"}}
    ad, ctx, res = run(_params(EXAMPLE / "model.py", tmp_path, mapping), regions=(33, 71), duration_ms=30.0)
    from cosim.services.netpyne_node.config import NetpyneParams
    from cosim.services.netpyne_node.usermodel import load_user_model
    built = load_user_model(NetpyneParams.model_validate(_params(EXAMPLE / "model.py", tmp_path, mapping)),
                            (33, 71), 42)
    assert built.popmap["cosim_drive_BAS"] == (71, "input") and "cosim_drive_PYR" not in built.popmap
    assert res["state/R_e"].shape[1] == 2


def test_error_inside_an_include_names_the_include(tmp_path):
    from cosim.services.netpyne_node.mechanisms import ModelError, compile_mods
    d = tmp_path / "mod"
    d.mkdir()
    (d / "m.mod").write_text('NEURON { SUFFIX m RANGE g }\nINCLUDE "defs.inc"\nBREAKPOINT { g = 2 }\n')
    (d / "defs.inc").write_text("PARAMETER { g = 1 }\nASSIGNED { v x = }\n")
    with pytest.raises(ModelError) as ei:
        compile_mods(d, tmp_path / "build")
    assert "defs.inc line 2:" in _one_line(ei) and "ASSIGNED { v x = }" in str(ei.value)


def test_a_tutorial_ending_in_check_output_loads(tmp_path):
    """Every NetPyNE tutorial ends in `sim.checkOutput('tutN')`, which reads the finished run
    (`sim.rank`, spike counts): nothing ran while the file loads, so it must do nothing (it
    raised AttributeError: module 'netpyne.sim' has no attribute 'rank'), and it is no call
    whose first argument could be taken for netParams."""
    from netpyne import sim
    from cosim.services.netpyne_node.usermodel import _read
    path = tmp_path / "tut.py"
    path.write_text("from netpyne import specs, sim\n"
                    "netParams = specs.NetParams()\n"
                    "netParams.popParams['S'] = {'cellModel': 'NetStim', 'numCells': 2}\n"
                    "simConfig = specs.SimConfig()\n"
                    "sim.createSimulateAnalyze(netParams=netParams, simConfig=simConfig)\n"
                    "sim.checkOutput('tut2')\n")
    original = sim.checkOutput
    net, cfg = _read(path)
    assert list(net.popParams) == ["S"] and cfg is not None
    assert sim.checkOutput is original                   # restored after loading


@pytest.mark.system
def test_artificial_cells_build_and_a_population_without_spike_source_is_named(tmp_path):
    """NetPyNE's tut_artif.py: NetStim, IntFire2 and VecStim populations; NetPyNE makes its VecStim
    population with `pulses` section-less cells with no spike source, and NEURON's spike_record
    asserted on them (`iter != gid2out_.end()`): the run failed while building. Now such cells
    are left out with one warning naming the population, and the rest builds."""
    path = tmp_path / "artif.py"
    path.write_text(
        "from netpyne import specs\n"
        "netParams = specs.NetParams()\n"
        "netParams.cellParams['PYR'] = {'conds': {'cellType': 'PYR'}, 'secs': {'soma': {"
        "'geom': {'diam': 18.8, 'L': 18.8, 'Ra': 123.0}, 'mechs': {'hh': {}}}}}\n"
        "netParams.popParams['PYR1'] = {'cellModel': 'HH', 'cellType': 'PYR', 'numCells': 4}\n"
        "netParams.popParams['artif2'] = {'cellModel': 'IntFire2', 'numCells': 4, 'ib': 0.0}\n"
        "netParams.popParams['artif4'] = {'cellModel': 'VecStim', 'numCells': 3, 'rate': 5, 'noise': 0.5,"
        " 'start': 50, 'pulses': [{'start': 200, 'end': 300, 'rate': 60, 'noise': 0.2}]}\n"
        "simConfig = specs.SimConfig()\n")
    params = _params(path, tmp_path, {"PYR1": {"region": 33, "role": "exc"}, "artif2": {"region": 33, "role": "inh"},
                                      "artif4": {"region": 33, "role": "other"}})
    # in a fresh process: NEURON without a VecStim mechanism (another test may have loaded one into
    # this process, and then NetPyNE makes real VecStim cells)
    code = ("import json, logging, sys\n"
            "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
            "from cosim.services.netpyne_node.adapter import NetpyneAdapter\n"
            "from cosim.services.netpyne_node.drive import make_context\n"
            "from neuron import h\n"
            "assert not hasattr(h, 'VecStim'), 'VecStim is loaded: the premise does not hold'\n"
            "params = json.loads(sys.argv[1])\n"
            "NetpyneAdapter(params).configure(make_context((33,), params, 10.0))\n")
    import json
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "population 'artif4': 3 cell(s) without a spike source" in p.stderr, p.stderr[-2000:]


def test_changes_a_script_makes_to_its_own_network_are_replayed(tmp_path, caplog):
    """NetPyNE's tut7.py builds its network step by step, runs it, then changes it
    (sim.net.modifyConns weight 0 → 0.5, sim.net.modifyCells soma L → 160) and runs again. cosim
    builds the network from netParams, so those changes were silently lost (a different model);
    now they are recorded while the file loads and replayed in order on the network cosim builds."""
    import logging
    from netpyne import sim
    path = tmp_path / "tut7like.py"
    path.write_text(
        "from netpyne import specs, sim\n"
        "netParams = specs.NetParams()\n"
        "netParams.popParams['hop'] = {'cellType': 'PYR', 'cellModel': 'HH', 'numCells': 6}\n"
        "netParams.cellParams['PYR'] = {'conds': {'cellType': 'PYR'}, 'secs': {'soma': {"
        "'geom': {'diam': 18.8, 'L': 18.8}, 'topol': {}, 'mechs': {'hh': {}}}}}\n"
        "netParams.synMechParams['inh'] = {'mod': 'Exp2Syn', 'tau1': 0.1, 'tau2': 1.0, 'e': -80}\n"
        "netParams.connParams['hop->hop'] = {'preConds': {'pop': 'hop'}, 'postConds': {'pop': 'hop'},"
        " 'weight': 0.0, 'synMech': 'inh', 'delay': 5}\n"
        "simConfig = specs.SimConfig()\n"
        "simConfig.duration = 50\n"
        "sim.initialize(simConfig=simConfig, netParams=netParams)\n"
        "sim.net.createPops(); sim.net.createCells(); sim.net.connectCells(); sim.net.addStims()\n"
        "sim.setupRecording(); sim.runSim(); sim.gatherData(); sim.saveData()\n"
        "sim.net.modifyConns({'conds': {'label': 'hop->hop'}, 'weight': 0.5})\n"
        "sim.net.modifyCells({'conds': {'pop': 'hop'}, 'secs': {'soma': {'geom': {'L': 160}}}})\n"
        "sim.simulate()\n")
    params = _params(path, tmp_path, {"hop": {"region": 33, "role": "exc"}})
    with caplog.at_level(logging.INFO):
        _configure(params)
    assert "changed the network it built (sim.net.modifyConns, sim.net.modifyCells): replayed" in caplog.text
    hop = [c for c in sim.net.cells if c.tags["pop"] == "hop"]
    weights = [conn["weight"] for c in hop for conn in c.conns if conn.get("label") == "hop->hop"]
    assert weights and set(weights) == {0.5}
    assert {c.secs["soma"]["hObj"].L for c in hop} == {160.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tut7like.py"]     # saveData wrote nothing


def test_netpyne_model_index_is_the_root_and_can_be_the_model_file():
    """NetPyNE's model index (index.npjson: mod_folder, simConfig, netParams, python_run, relative
    to it): `src/init.py` beside it runs from the index's folder (its `loadFromIndexFile
    ('index.npjson')` failed with FileNotFoundError from src/), the mechanisms are the index's
    `mod_folder`, and the index itself may be the model file (NetPyNE's own loader reads it)."""
    from cosim.services.netpyne_node.config import UserModel
    from cosim.services.netpyne_node.usermodel import _read, find_mod_dir, model_root
    root = Path(__file__).parent / "models" / "indexed"
    assert model_root(root / "src" / "init.py") == root.resolve() == model_root(root / "index.npjson")
    pops = {"Epop": {"region": 33, "role": "exc"}}
    for path in (root / "src" / "init.py", root / "index.npjson"):
        assert find_mod_dir(UserModel(path=str(path), populations=pops)) == root.resolve() / "mod"
        net, cfg = _read(path)
        assert sorted(net.popParams) == ["Epop", "Ipop"] and cfg.filename == "indexed", path


def test_rxd_over_all_cells_keeps_to_the_models_own_cells(tmp_path, caplog):
    """NetPyNE's examples/rxd_buffering: an RxD region over `cells: ['all']` in a model with no
    input population. cosim attaches its drive (NetStim relays, point cells without sections) and
    NetPyNE's addRxD then failed on them ('function' object has no attribute 'items'); 'all' now
    means the model's own populations."""
    import logging
    from netpyne import sim
    path = tmp_path / "rxdall.py"
    path.write_text(
        "from netpyne import specs\n"
        "netParams = specs.NetParams()\n"
        "netParams.popParams['cell'] = {'numCells': 2, 'cellModel': 'HH'}\n"
        "netParams.cellParams['PYR'] = {'conds': {'cellModel': 'HH'}, 'secs': {'soma': {"
        "'geom': {'diam': 18.8, 'L': 18.8}, 'mechs': {'hh': {}}}}}\n"
        "netParams.rxdParams['regions'] = {'cyt': {'cells': ['all'], 'secs': 'soma', 'nrn_region': 'i'}}\n"
        "netParams.rxdParams['species'] = {'ca': {'regions': ['cyt'], 'charge': 2, 'initial': 1e-4},"
        " 'buf': {'regions': ['cyt'], 'initial': 1e-4}, 'cabuf': {'regions': ['cyt'], 'initial': 0}}\n"
        "netParams.rxdParams['reactions'] = {'buffering': {'reactant': '2 * ca + buf', 'product': 'cabuf',"
        " 'rate_f': 1e6, 'rate_b': 1e-2}}\n"
        "simConfig = specs.SimConfig()\n")
    with caplog.at_level(logging.INFO):
        _configure(_params(path, tmp_path, {"cell": {"region": 33, "role": "exc"}}))
    assert "rxdParams region 'cyt' over the model's own populations ['cell']" in caplog.text
    assert sim.net.rxd["regions"]["cyt"]["hObj"] is not None


def test_an_include_beside_the_model_is_found_where_nrnivmodl_finds_it(tmp_path):
    """NetPyNE's doc/source/code: `mod/AMPA.mod` INCLUDEs `netcon.inc`, which sits in the folder above
    (where the user runs `nrnivmodl mod`); cosim compiled the .mod files alone and nocmodl failed
    (tut_import, tut_artif). Now includes are looked for where nocmodl looks: beside the .mod files,
    then in the folder above."""
    d = tmp_path / "mod"
    d.mkdir()
    (d / "m.mod").write_text('NEURON { SUFFIX mbeside RANGE g }\nINCLUDE "defs_above.inc"\nBREAKPOINT { g = 2 }\n')
    (tmp_path / "defs_above.inc").write_text("PARAMETER { g = 1 }\n")
    from cosim.services.netpyne_node.mechanisms import compile_mods
    build = compile_mods(d, tmp_path / "build")
    assert build is not None
    assert any(build.glob("*/libnrnmech.so")) or any(build.glob("*/.libs/libnrnmech.so"))


def test_a_model_index_the_script_names_is_found_levels_above(tmp_path):
    """NetPyNE's examples/LFPrecording: `src/net/init.py` calls `sim.loadFromIndexFile('index_net.npjson')`
    and is run from the model's root, two levels up; cosim looked for `index.npjson` only, one level
    up, and the model failed. Now the index the script names is looked for where NetPyNE would
    resolve it (the file's folder and up to four above), as the model's root."""
    from cosim.services.netpyne_node.config import UserModel
    from cosim.services.netpyne_node.usermodel import _read, find_mod_dir, model_root
    src = Path(__file__).parent / "models" / "indexed"
    root = tmp_path / "lfp"
    shutil.copytree(src, root)
    index = json.loads((root / "index.npjson").read_text())
    (root / "index.npjson").unlink()
    (root / "index_net.npjson").write_text(json.dumps({**index, "python_run": "src/net/init.py"}))
    (root / "src" / "net").mkdir()
    (root / "src" / "init.py").rename(root / "src" / "net" / "init.py")
    init = root / "src" / "net" / "init.py"
    init.write_text(init.read_text().replace("'index.npjson'", "'index_net.npjson'"))
    assert model_root(init) == root.resolve()
    assert find_mod_dir(UserModel(path=str(init), populations={"Epop": {"region": 33, "role": "exc"}})) == root.resolve() / "mod"
    net, cfg = _read(init)
    assert sorted(net.popParams) == ["Epop", "Ipop"]


def test_density_defined_populations_get_a_drive_sized_as_netpyne_makes_them(tmp_path):
    """NetPyNE's examples/M1 gives its populations by `density` (cells/mm³) over a `ynormRange` of a
    cuboid, not `numCells`: cosim refused it ('cannot attach the TVB drive'). The drive is now sized
    with NetPyNE's own arithmetic, and every created cell gets its relay (checked against the cells
    NetPyNE made)."""
    path = tmp_path / "dens.py"
    path.write_text(
        "from netpyne import specs\n"
        "netParams = specs.NetParams()\n"
        "netParams.sizeX, netParams.sizeY, netParams.sizeZ = 50, 1350, 50\n"
        "netParams.cellParams['PYR'] = {'secs': {'soma': {'geom': {'diam': 18.8, 'L': 18.8}, 'mechs': {'hh': {}}}}}\n"
        "netParams.popParams['IT_L23'] = {'cellType': 'PYR', 'ynormRange': [0.12, 0.31], 'density': 80e3}\n"
        "netParams.popParams['PV_L23'] = {'cellType': 'PYR', 'yRange': [162, 418.5], 'density': 10e3}\n"
        "simConfig = specs.SimConfig()\n")
    params = _params(path, tmp_path, {"IT_L23": {"region": 33, "role": "exc"}, "PV_L23": {"region": 33, "role": "inh"}})
    params["model_file"]["drive"] = {"roles": ["exc", "inh"]}
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    from cosim.services.netpyne_node.drive import make_context
    ad = NetpyneAdapter(params)
    ad.configure(make_context((33,), params, 10.0))
    e = ad.engine
    # NetPyNE: int(80e3 * 0.05 * 1.35 * 0.05 * 0.19) = 51 and int(10e3 * 0.003375 * 0.19) = 6
    assert e.n_cells_of("IT_L23") == 51 and e.n_cells_of("PV_L23") == 6
    assert e.n_cells_of("cosim_drive_IT_L23") == 51 and e.n_cells_of("cosim_drive_PV_L23") == 6
    ad.finish(None)


@pytest.mark.system
def test_validate_builds_the_network_the_run_would(tmp_path):
    """`cosim validate` said ok to models NEURON cannot build (issue 22: tut_artif, netClamp), and the
    run failed while building; it now builds the network as the node does (nothing simulated) and
    refuses in one line, exit 2."""
    import subprocess
    import yaml
    from cosim.launch import command_lines
    path = tmp_path / "bad.py"
    path.write_text(
        "from netpyne import specs\n"
        "netParams = specs.NetParams()\n"
        "netParams.cellParams['PYR'] = {'secs': {'soma': {'geom': {'diam': 18.8, 'L': 18.8}, "
        "'mechs': {'hh': {}}, 'pointps': {'clamp': {'mod': 'NoSuchPointProcess', 'loc': 0.5}}}}}\n"
        "netParams.popParams['E'] = {'cellType': 'PYR', 'numCells': 4}\n"
        "simConfig = specs.SimConfig()\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"run": {"duration_ms": 50}, "spiking_nodes": [
        {"name": "spiking", "regions": [33], "params": {"model_file": {
            "path": str(path), "populations": {"E": {"region": 33, "role": "exc"}}}}}]}))
    p = subprocess.run(command_lines.cosim_cmd() + ["validate", str(cfg)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("cosim:")]
    assert p.returncode == 2 and len(lines) == 1 and "spiking_nodes[0] (spiking)" in lines[0], (p.returncode, p.stderr[-1500:])
    assert "NoSuchPointProcess" in lines[0], lines
