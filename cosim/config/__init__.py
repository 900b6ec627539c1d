"""The run configuration: its schema (``schema``), loading and overrides (``load``), and time
on the run's integer clock (``timing``). Everything a caller needs is importable from here."""
from cosim.config.load import (apply_overrides, check_files, check_nodes, dump_yaml, load_config,
                               parse_config)
from cosim.config.schema import (MAX_MS_TIMEOUT, MAX_STEPS, SEED_MAX, TVB_MULTISCALE_TVB, CheckpointSection,
                                 CoordinatorSection, IntegratorSection, MonitorSection, MpiSection, NodeEntry,
                                 RunConfig, RunSection, TVBSection, address_problem)
from cosim.config.timing import ticks_of, whole_ticks
from cosim.errors import ConfigError

__all__ = ["MAX_MS_TIMEOUT", "MAX_STEPS", "SEED_MAX", "TVB_MULTISCALE_TVB", "CheckpointSection", "ConfigError",
           "CoordinatorSection", "IntegratorSection", "MonitorSection", "MpiSection", "NodeEntry", "RunConfig",
           "RunSection", "TVBSection", "address_problem", "apply_overrides", "check_files", "check_nodes",
           "dump_yaml", "load_config", "parse_config", "ticks_of", "whole_ticks"]
