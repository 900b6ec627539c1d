"""User models: loading, mapping, .mod compilation, and one-line errors before the run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from np_helpers import run

import netpyne  # noqa: F401,E402  (a missing install must fail, not skip)

EXAMPLE = Path(__file__).resolve().parents[2] / "services" / "netpyne_node" / "examples" / "user_model"
MAP = {"drive": {"region": 33, "role": "input"}, "PYR": {"region": 33, "role": "exc"},
       "BAS": {"region": 33, "role": "inh"}}


def _params(path, tmp_path, populations=None):
    return {"model_file": {"path": str(path), "populations": populations or MAP, "build_dir": str(tmp_path / "build")},
            "input": {"scale": 0.1}, "record": {"plot": False}}


def _configure(params, regions=(33,)):
    from services.netpyne_node.adapter import NetpyneAdapter
    from services.netpyne_node.drive import make_context
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
    from services.netpyne_node.mechanisms import compile_mods
    assert compile_mods(EXAMPLE, tmp_path / "build") == builds[0]   # cached, no recompilation


def test_model_without_netparams(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\n")
    from services.netpyne_node.mechanisms import ModelError
    with pytest.raises(ModelError) as ei:
        _configure(_params(tmp_path / "m.py", tmp_path))
    assert "does not define netParams" in _one_line(ei)


def test_json_model_and_unknown_population(tmp_path):
    (tmp_path / "m.json").write_text('{"netParams": {"popParams": {"A": {"cellModel": "NetStim", "numCells": 2}}}}')
    from services.netpyne_node.mechanisms import ModelError
    with pytest.raises(ModelError) as ei:
        _configure(_params(tmp_path / "m.json", tmp_path))
    assert "'drive'" in _one_line(ei) and "not in netParams.popParams" in str(ei.value)


def test_population_mapped_to_missing_or_foreign_region(tmp_path):
    from services.netpyne_node.mechanisms import ModelError
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
    from services.netpyne_node.mechanisms import ModelError
    with pytest.raises(ModelError) as ei:
        _configure(_params(d / "model.py", tmp_path))
    assert "broken.mod line 3" in _one_line(ei)
    assert not [p for p in (tmp_path / "build").iterdir() if not p.name.startswith("build-")]
