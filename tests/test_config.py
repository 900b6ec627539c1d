"""Config loading: the documented default equals the built-in one; errors name the field."""
import sys
from pathlib import Path

import pytest

from cosim.config import ConfigError, load_config, parse_config

pytestmark = [pytest.mark.unit]

REPO = Path(__file__).resolve().parents[1]


def test_documented_default_equals_builtin_default():
    assert load_config(REPO / "examples" / "default.yaml") == load_config(None)


def test_toml_is_accepted(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[run]\nduration_ms = 20\n[[spiking_nodes]]\nname = "s"\nbackend = "noop"\nregions = [1]\n')
    cfg = load_config(p)
    assert cfg.run.duration_ms == 20 and cfg.spiking_nodes[0].regions == [1]


@pytest.mark.parametrize("data, field", [
    ({"run": {"duration_ms": 0}}, "run.duration_ms"),
    ({"run": {"bogus": 1}}, "run.bogus"),
    ({"tvb": {"model": {"G": 2, "Q": 1}}}, "tvb.model"),
    ({"spiking_nodes": [{"regions": [1, 1]}]}, "spiking_nodes[0].regions"),
    ({"spiking_nodes": [{"backend": "no-such-simulator"}]}, "spiking_nodes[0].backend"),
    ({"spiking_nodes": [{"name": "a", "regions": [1]}, {"name": "b", "regions": [1]}]}, "region 1 is claimed"),
])
def test_errors_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data)


def test_a_value_every_union_member_refuses_is_named_by_its_field_once():
    # before: "tvb.model.J_N.float: Input should be a finite number (and 1 more)" (one error per
    # member of float | list[float], named by type)
    with pytest.raises(ConfigError) as e:
        parse_config({"tvb": {"model": {"J_N": float("nan")}}})
    assert str(e.value) == "<config>: tvb.model.J_N: Input should be a finite number"
    with pytest.raises(ConfigError, match=r"tvb.integrator.dt: .* \(and 1 more\)$"):   # siblings stay two
        parse_config({"tvb": {"integrator": {"dt": "x", "bogus": "x"}}})


def test_model_params_without_a_class_are_the_default_models():
    # --set tvb.model.params.J_N=0.2 on the default config; before: a parameter named "params"
    cfg = parse_config({"tvb": {"model": {"params": {"J_N": 0.2}}}})
    assert cfg.tvb.model == {"J_N": 0.2} and cfg.tvb.model_class == parse_config({}).tvb.model_class
    with pytest.raises(ConfigError, match="tvb.model.J_N: Input should be a finite number"):
        parse_config({"tvb": {"model": {"params": {"J_N": float("inf")}}}})


def test_set_overrides_keep_unset_fields_unset(tmp_path):
    from cosim.config import apply_overrides
    p = tmp_path / "c.yaml"
    p.write_text("run: {duration_ms: 30}\n")
    cfg = apply_overrides(str(p), ["spiking_nodes.0.backend=reference", "run.seed=5"])
    assert cfg.spiking_nodes[0].backend == "reference" and cfg.run.seed == 5 and cfg.run.duration_ms == 30
    # the launcher picks free ports only for addresses the user did not set
    assert "router" not in cfg.coordinator.model_fields_set


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    d = tmp_path / "models"
    d.mkdir()
    (d / "m.py").write_text("netParams = None\n")
    p = d / "c.yaml"
    p.write_text("spiking_nodes: [{backend: netpyne, regions: [1], params: {model_file: "
                 "{path: m.py, populations: {E: {region: 1, role: exc}}}}}]\n")
    cfg = load_config(p)
    assert cfg.spiking_nodes[0].params["model_file"]["path"] == str(d / "m.py")


def test_mpi_block_places_the_ranks(tmp_path):
    """spiking_nodes[i].mpi: `--host` and the extra arguments go to mpiexec, before the program
    (also from `--set`, and from a plain dict as the benchmarks pass nodes)."""
    from cosim.launch import command_lines
    from cosim.config import apply_overrides
    p = tmp_path / "c.yaml"
    p.write_text("spiking_nodes: [{backend: netpyne, regions: [1], params: {mpi_ranks: 3}}]\n")
    cfg = apply_overrides(str(p), ["spiking_nodes.0.mpi.hosts=[a, 'b:2']", "spiking_nodes.0.mpi.args=[--mca, btl, 'self,tcp']"])
    for entry in (cfg.spiking_nodes[0], cfg.spiking_nodes[0].model_dump(mode="json")):
        argv = command_lines.spiking_cmd(entry, "tcp://10.0.0.1:5555")
        prog = argv.index(sys.executable)          # the program: python -P -m cosim.cli ...
        assert argv[:5] == ["mpiexec", "--allow-run-as-root", "--oversubscribe", "-n", "3"]
        assert argv[prog - 5:prog] == ["--host", "a,b:2", "--mca", "btl", "self,tcp"]
    plain = parse_config({"spiking_nodes": [{"backend": "netpyne", "regions": [1], "params": {"mpi_ranks": 2}}]})
    assert "--host" not in command_lines.spiking_cmd(plain.spiking_nodes[0], "tcp://10.0.0.1:5555")


def test_mpi_placement_does_not_change_the_checkpoint_identity():
    from cosim.runtime.checkpoint import config_hash
    node = {"backend": "netpyne", "regions": [1], "params": {"mpi_ranks": 2}}
    a = parse_config({"spiking_nodes": [node]}).model_dump(mode="json")
    b = parse_config({"spiking_nodes": [{**node, "mpi": {"hosts": ["x", "y"]}}]}).model_dump(mode="json")
    assert config_hash(a) == config_hash(b)


@pytest.mark.unit
def test_region_problem_names_the_field_and_the_regions_that_do_not_exist():
    """One check for `cosim validate` and the coordinator (a deployment without preflight): the
    same field and words from both."""
    from cosim.config.regions import region_problem
    cfg = parse_config({"spiking_nodes": [{"backend": "noop", "regions": [1, 2]}]}).model_dump(mode="json")
    assert region_problem(cfg, 76) is None
    assert region_problem(cfg, 2) == ("spiking_nodes[0].regions", "region(s) [2] do not exist (the connectivity "
                                                                  "has 2 regions, 0..1)")
    cfg["coordinator"]["watch_regions"] = [0, 76]
    assert region_problem(cfg, 76) == ("coordinator.watch_regions", "region(s) [76] do not exist (the connectivity "
                                                                    "has 76 regions, 0..75)")
    cfg["coordinator"]["watch_regions"] = [-1]
    assert region_problem(cfg, 76)[0] == "coordinator.watch_regions"
