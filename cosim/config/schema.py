"""The run configuration's schema (pydantic): every section, field, default and bound.

Every error names the field and the reason (``ConfigError``). Backend-specific blocks
(``spiking_nodes[i].params``) are validated by the backend's own model, looked up in
``cosim.plugins`` (cosim.config.load); this module checks only what the whole run shares.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


from cosim.config.timing import whole_ticks


class _Strict(BaseModel):
    # every float must be finite: inf/nan pass `gt=0` and similar bounds and then fail late
    # (NaN coupling, saturated noise) or name the wrong field
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)


# Upper bounds that keep every derived integer and buffer sane (each named in the error):
MAX_STEPS = 10**9           # TVB steps in one run (1e5 s at dt 0.1 ms; ~1 day of wall time per 1e9 steps is far off)
MAX_MS_TIMEOUT = 86_400_000  # one day: timeouts and intervals in ms
SEED_MAX = 2**32 - 1        # numpy's legacy RandomState (TVB's noise, initial history) takes 32-bit seeds


class CheckpointSection(_Strict):
    """Checkpoints for `cosim resume` (PROTOCOL.md §10.1): every N windows and/or every T seconds."""
    every_windows: int | None = Field(None, ge=1, le=10**9, description="checkpoint after every N-th window")
    every_s: float | None = Field(None, gt=0, le=1e7, description="checkpoint at the first window end T s after the last")
    keep: int = Field(2, ge=1, le=100, description="checkpoints kept (2: a corrupted newest one falls back)")

    @model_validator(mode="after")
    def _some(self) -> CheckpointSection:
        if self.every_windows is None and self.every_s is None:
            raise ValueError("run.checkpoint needs every_windows or every_s")
        return self


class RunSection(_Strict):
    name: str = "default"
    duration_ms: float = Field(500.0, gt=0, le=1e12, description="simulated time")
    window_ms: float | None = Field(None, gt=0, description="synchronization window; default: the largest causal one "
                                    "(the smallest crossing delay divided by run.lookahead)")
    lookahead: int | Literal["auto"] = Field(1, description="lag m in windows (PROTOCOL.md §3): inputs of window k are "
                           "the outputs of window k - m, so a node runs up to m windows ahead while data is in flight; "
                           "windows become m times shorter. 1 = plain lockstep; 'auto' = chosen at setup from the "
                           "measured round trips and compute time (docs/performance.md, Distance)")

    @field_validator("lookahead")
    @classmethod
    def _lookahead(cls, v):
        if v != "auto" and not 1 <= v <= 64:
            raise ValueError(f"must be 1..64 or 'auto', got {v}")
        return v
    results_dir: str = "results"
    seed: int = Field(42, ge=0, le=SEED_MAX, description="seeds TVB's initial history, noise and every Poisson train")
    progress: bool = True
    checkpoint: CheckpointSection | None = Field(None, description="checkpoints for `cosim resume`; off if null")
    inter_service: Literal["auto", "spikes", "rates"] = Field(
        "auto", description="how spiking regions on different spiking services are coupled: spikes = E->E synapses "
                            "as within one service (spikes travel between the services, the same network however "
                            "regions are grouped); rates = population rates only (a different network); auto = "
                            "spikes wherever both services can (cosim/config/inter_service.py), else rates")


class ClassSpec(_Strict):
    """A tvb-library class by name (or a user's dotted path) and its parameters."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True)
    class_: str = Field(alias="class", min_length=1, max_length=300)
    params: dict[str, float | list[float]] = Field(default_factory=dict)


class NoiseSection(_Strict):
    """TVB noise: ``Additive`` (or ``Multiplicative``) with ``nsig`` per state variable (one number: all)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True)
    class_: Literal["Additive", "Multiplicative"] = Field("Additive", alias="class")
    nsig: float | list[float] = 1e-3
    noise_seed: int | None = Field(None, ge=0, le=SEED_MAX, description="None: run.seed")


#: integrator classes by the legacy ``kind``
_KIND_CLASS = {"heun_deterministic": "HeunDeterministic", "heun_stochastic": "HeunStochastic"}


class IntegratorSection(_Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True)
    kind: Literal["heun_deterministic", "heun_stochastic"] = "heun_deterministic"
    noise_sigma: float = Field(1e-3, ge=0, description="additive noise on S_e and S_i (stochastic only)")
    noise_seed: int | None = Field(None, ge=0, le=SEED_MAX,
                                   description="seed of the noise stream; None: run.seed. A fixed number gives every "
                                               "run the same noise, as tvb-multiscale does (docs/science.md, cause (e))")
    class_: str | None = Field(None, alias="class", description="a tvb-library integrator class (HeunDeterministic, "
                               "HeunStochastic, EulerDeterministic, EulerStochastic, RungeKutta4thOrderDeterministic, "
                               "...); None: from kind")
    dt: float | None = Field(None, gt=0, description="if set, must equal tvb.dt_ms")
    noise: NoiseSection | None = Field(None, description="stochastic integrators' noise; None: Additive at "
                                       "noise_sigma on every state variable")

    def class_name(self) -> str:
        return self.class_ or _KIND_CLASS[self.kind]

    def stochastic(self) -> bool:
        return self.class_name().endswith("Stochastic")


class SensorMonitor(_Strict):
    """EEG, MEG or iEEG through tvb-data's default sensors, projection and region mapping (76 regions)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True)
    class_: Literal["EEG", "MEG", "iEEG"] = Field(alias="class")
    period_ms: float = Field(1.0, gt=0)
    variable: str | None = Field(None, description="the state variable projected; None: the model's first "
                                 "variable of interest")


class StimulusSection(_Strict):
    """TVB's StimuliRegion: ``weight`` on ``regions``, times a temporal equation (tvb.datatypes.equations)."""
    regions: list[int] = Field(min_length=1)
    weight: float = 1.0
    equation: ClassSpec = Field(description="e.g. {class: PulseTrain, params: {onset: 100, T: 25, tau: 5, amp: 1}}")

class MonitorSection(_Strict):
    raw: bool = True
    temporal_average_ms: float | None = Field(1.0, gt=0)
    bold_period_ms: float | None = Field(None, gt=0, description="BOLD sampling period, e.g. 2000; off if null")
    sensors: list[SensorMonitor] = Field(default_factory=list, description="EEG/MEG/iEEG monitors")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data):
        """``monitors: [Raw, {class: TemporalAverage, period_ms: 1}, {class: Bold, period_ms: 2000}, {class: EEG}]``."""
        if not isinstance(data, list):
            return data
        out: dict[str, Any] = {"raw": False, "temporal_average_ms": None, "bold_period_ms": None, "sensors": []}
        for m in data:
            if not isinstance(m, (str, dict)):
                raise ValueError(f"a monitor is a class name or {{class: ..., period_ms: ...}}, got {m!r:.60}")
            m = {"class": m} if isinstance(m, str) else dict(m)
            name = m.get("class")
            if name == "Raw":
                out["raw"] = True
            elif name == "TemporalAverage":
                out["temporal_average_ms"] = m.get("period_ms", 1.0)
            elif name == "Bold":
                out["bold_period_ms"] = m.get("period_ms", 2000.0)
            elif name in ("EEG", "MEG", "iEEG"):
                out["sensors"].append(m)
            else:
                import difflib
                close = difflib.get_close_matches(str(name), ["Raw", "TemporalAverage", "Bold", "EEG", "MEG", "iEEG"])
                raise ValueError(f"unknown monitor {name!r}; known: Raw, TemporalAverage, Bold, EEG, MEG, iEEG"
                                 + (f" (close: {close})" if close else ""))
        return out


#: what ``tvb.conventions: tvb-multiscale`` sets when the config does not (docs/science.md gives the
#: toolbox file and line of each); the spiking nodes' input block is filled by RunConfig
TVB_MULTISCALE_TVB = {"remove_self_connections": True, "weights_scaling": "p99", "initial_history": "zero",
                      "integrator": {"kind": "heun_stochastic", "noise_sigma": 1e-3}}
TVB_MULTISCALE_PRESETS = ("tvb-multiscale", "tvb-multiscale-compat")
DEFAULT_MODEL = "ReducedWongWangExcInh"
#: what ``tvb-multiscale-compat`` adds to a spiking node's params: the toolbox's NEURON dt (c) and
#: its computed differences (a), (b), (d), (f) (services/netpyne_node/toolbox.py; (e), (g) are
#: switches the preset leaves off, docs/science.md says why); backends without them get none
TVB_MULTISCALE_COMPAT_NODE = {"dt_ms": 0.05, "toolbox": {"weight_sd_as_variance": True, "input_skips_last_step": True,
                                                         "rate_kernel_per_window": True,
                                                         "input_random_divergence": True}}


class TVBSection(_Strict):
    conventions: Literal["default", "tvb-multiscale", "tvb-multiscale-compat"] = Field(
        "default", description="tvb-multiscale: the reference toolbox's interface conventions as defaults "
                               "(weights / 99th percentile, no self-connections, stochastic Heun, zero initial "
                               "history, per-source input at weight a*G*w); tvb-multiscale-compat: the same plus "
                               "what the toolbox computes where it differs (NetPyNE dt 0.05 ms, params.toolbox); "
                               "explicit settings still win")
    weights_scaling: Literal["none", "p99"] = Field(
        "none", description="p99: weights divided by their 99th percentile after removing self-connections "
                            "(tvb-multiscale; tvb-data's 76 regions: maximum 3 -> 1)")
    initial_history: Literal["random", "zero"] = Field(
        "random", description="random: TVB's model.initial (seeded by run.seed); zero: S_e = S_i = 0 at every history step")
    connectivity: str = Field("default", description="'default' (tvb-data 76 regions) or a path to a TVB connectivity zip")
    dt_ms: float = Field(0.1, ge=1e-6, le=1000.0, description="integration step (1 ns .. 1 s)")
    # slowest unmyelinated fibres conduct at ~0.1 mm/ms; below 0.01 mm/ms a 250 mm tract is a 25 s
    # delay and TVB's history buffer (max delay steps x regions) grows without bound
    conduction_speed_mm_per_ms: float = Field(3.0, ge=0.01, le=1e6)
    remove_self_connections: bool = False
    coupling_a: float = Field(0.00390625, description="Linear coupling slope (TVB's default)")
    model: dict[str, float | list[float]] = Field(default_factory=dict, description="the model's parameters, e.g. {G: 2.0}; "
                                                  "written {class: MontbrioPazoRoxin, params: {...}} to name the class")
    model_class: str = Field(DEFAULT_MODEL, min_length=1, max_length=300,
                             description="a tvb-library model class, or a dotted path to a user's Model subclass")
    coupling: ClassSpec | None = Field(None, description="a tvb-library coupling, e.g. {class: Difference, params: "
                                       "{a: 0.1}}; None: Linear with coupling_a")
    interface: dict[str, Any] | None = Field(None, description="the model's spiking interface, for a model without a "
                                             "shipped one (cosim.config.interfaces.from_config; docs/models.md)")
    stimulus: StimulusSection | None = None
    integrator: IntegratorSection = Field(default_factory=IntegratorSection)
    monitors: MonitorSection = Field(default_factory=MonitorSection)

    @model_validator(mode="before")
    @classmethod
    def _model_class(cls, data):
        """``model: {class: X, params: {...}}`` is ``model_class: X`` and ``model: {...}``; ``model:
        {params: {...}}`` (no class, e.g. ``--set tvb.model.params.J_N=0.2``) is the default model's."""
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and (
                "class" in data["model"] or isinstance(data["model"].get("params"), dict)):
            m = dict(data["model"])
            extra = sorted(set(m) - {"class", "params"})
            if extra:
                raise ValueError(f"tvb.model: unknown key(s) {extra}; write {{class: ..., params: {{...}}}}")
            data = {**data, "model": m.get("params") or {}}
            if "class" in m:
                data["model_class"] = m["class"]
        return data

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        """``conventions: tvb-multiscale`` fills what the config leaves unset (integrator: key by key)."""
        if isinstance(data, dict) and data.get("conventions") in TVB_MULTISCALE_PRESETS:
            data = dict(data)
            for k, v in TVB_MULTISCALE_TVB.items():
                if isinstance(v, dict) and isinstance(data.get(k), dict):
                    data[k] = {**v, **data[k]}
                else:
                    data.setdefault(k, v)
        return data

    @model_validator(mode="after")
    def _monitor_periods(self) -> TVBSection:
        for name in ("temporal_average_ms", "bold_period_ms"):
            period = getattr(self.monitors, name)
            if period is not None:
                _require_whole(period, self.dt_ms,
                               f"monitors.{name}: {period} ms must be a whole multiple of tvb.dt_ms {self.dt_ms} ms")
        for sm in self.monitors.sensors:
            _require_whole(sm.period_ms, self.dt_ms, f"monitors {sm.class_}: period_ms {sm.period_ms} must be a whole "
                                                     f"multiple of tvb.dt_ms {self.dt_ms} ms")
        return self

    @model_validator(mode="after")
    def _classes(self) -> TVBSection:
        if self.model_class == DEFAULT_MODEL:
            self._known_model_params(self.model)
        if self.integrator.dt is not None and not _close(self.integrator.dt, self.dt_ms):
            raise ValueError(f"tvb.integrator.dt {self.integrator.dt} differs from tvb.dt_ms {self.dt_ms}; give one")
        if self.integrator.noise is not None and not self.integrator.stochastic():
            raise ValueError(f"tvb.integrator.noise: {self.integrator.class_name()} is deterministic; "
                             "name a *Stochastic class")
        from cosim.config import tvb_classes    # named classes and parameters, checked against tvb-library
        tvb_classes.check(self)
        return self

    @staticmethod
    def _known_model_params(v: dict) -> dict:
        known = {"a_e", "b_e", "d_e", "gamma_e", "tau_e", "w_p", "J_N", "W_e", "a_i", "b_i", "d_i",
                 "gamma_i", "tau_i", "J_i", "W_i", "I_o", "I_ext", "G", "lamda"}
        bad = sorted(set(v) - known)
        if bad:
            import difflib
            close = sorted({c for b in bad for c in difflib.get_close_matches(b, known, n=2)})
            raise ValueError(f"tvb.model: unknown ReducedWongWangExcInh parameter(s) {bad}" +
                             (f" (close: {close})" if close else f"; known: {sorted(known)}"))
        return v


_MPI_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}(:[0-9]{1,5})?$")
#: mpiexec options the launcher sets itself (the rank count is the backend's) or that mpi.hosts sets
_MPI_RANK_OPTS = {"-n", "-np", "--n", "--np", "-c"}
_MPI_HOST_OPTS = {"-H", "-host", "--host", "-hostfile", "--hostfile", "-machinefile", "--machinefile"}


class MpiSection(_Strict):
    """Where a spiking node's MPI ranks run: the launcher's ``mpiexec -n RANKS`` (RANKS from the
    backend's params) gets ``--host`` and ``args``. Open MPI syntax; rank 0, the one that talks
    to the coordinator, runs on the first host."""
    hosts: list[str] = Field(default_factory=list, description="machines for the ranks, in order: "
                             "'HOST' (one rank) or 'HOST:SLOTS'; rank 0 on the first")
    args: list[str] = Field(default_factory=list, description="more mpiexec arguments, e.g. "
                            "[--mca, btl_tcp_if_include, eth0, -x, PYTHONPATH]")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for h in v:
            if not _MPI_HOST.match(h) or (":" in h and not 1 <= int(h.rsplit(":", 1)[1]) <= 4096):
                raise ValueError(f"{h[:100]!r} is not HOST or HOST:SLOTS (slots 1..4096)")
        names = [h.split(":")[0] for h in v]
        if len(set(names)) != len(names):
            raise ValueError(f"host(s) listed twice: {sorted({n for n in names if names.count(n) > 1})} "
                             "(give several ranks to one host as HOST:SLOTS)")
        return v

    @model_validator(mode="after")
    def _one_host_list(self) -> MpiSection:
        given = [a for a in self.args if a.split("=")[0] in _MPI_HOST_OPTS]
        if self.hosts and given:
            raise ValueError(f"hosts and {given[0]!r} in args both place the ranks; keep one")
        return self

    def slots(self) -> int:
        """Ranks the hosts take (0: no hosts listed)."""
        return sum(int(h.rsplit(":", 1)[1]) if ":" in h else 1 for h in self.hosts)

    def mpiexec_args(self) -> list[str]:
        return (["--host", ",".join(self.hosts)] if self.hosts else []) + list(self.args)


class NodeEntry(_Strict):
    """One spiking service and the TVB regions it simulates."""
    name: str = Field("spiking", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    backend: str = "netpyne"
    regions: list[int] = Field(default_factory=lambda: [33, 71], min_length=1)
    params: dict[str, Any] = Field(default_factory=dict, description="backend-specific, validated by the backend")
    mpi: MpiSection | None = Field(None, description="where the node's MPI ranks run (several machines); "
                                                     "needs a backend running on more than one rank")

    @field_validator("regions")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate region(s) {sorted({r for r in v if v.count(r) > 1})}")
        if any(r < 0 for r in v):
            raise ValueError("region indices must be >= 0")
        return v


class CoordinatorSection(_Strict):
    router: str = Field("tcp://127.0.0.1:5555", description="ROUTER address nodes connect to")
    pub: str = Field("tcp://127.0.0.1:5556", description="PUB address for run events and progress")
    heartbeat_interval_ms: int = Field(500, gt=0, le=MAX_MS_TIMEOUT)
    heartbeat_timeout_ms: int = Field(5000, gt=0, le=MAX_MS_TIMEOUT)
    setup_timeout_ms: int = Field(120_000, gt=0, le=MAX_MS_TIMEOUT, description="registration + configuration of every node")
    window_timeout_ms: int | None = Field(None, gt=0, le=MAX_MS_TIMEOUT, description=(
        "a window (or checkpoint) that has not ended this long after a node began it fails the run, naming "
        "node and window (PROTOCOL.md §8); null: max(60 s, 10 x heartbeat_timeout_ms, 20 x the longest window so far)"))
    # ZMQ_MAXMSGSIZE is an int64 and msgpack frames are limited to 2**32 - 1 bytes
    max_message_bytes: int = Field(64 * 2**20, gt=1024, le=2**32 - 1)
    curve: bool = Field(False, description="CURVE encryption + authentication (see `cosim keys`)")
    keys_dir: str | None = None
    watch_regions: list[int] = Field(default_factory=list, description="TVB-simulated regions whose R_e is "
                                     "published on PUB for `cosim watch` (and recorded in coordinator.h5)")

    @field_validator("router", "pub")
    @classmethod
    def _address(cls, v: str) -> str:
        why = address_problem(v)
        if why:
            raise ValueError(why)
        return v

    @model_validator(mode="after")
    def _timeouts(self) -> CoordinatorSection:
        if self.heartbeat_timeout_ms < 2 * self.heartbeat_interval_ms:
            raise ValueError("heartbeat_timeout_ms must be at least twice heartbeat_interval_ms")
        return self


class RunConfig(_Strict):
    run: RunSection = Field(default_factory=RunSection)
    tvb: TVBSection = Field(default_factory=TVBSection)
    spiking_nodes: list[NodeEntry] = Field(default_factory=lambda: [NodeEntry()], min_length=1)
    coordinator: CoordinatorSection = Field(default_factory=CoordinatorSection)

    @model_validator(mode="before")
    @classmethod
    def _preset_inputs(cls, data):
        """``tvb.conventions: tvb-multiscale``: each spiking node's TVB input as the toolbox's
        spikeNet coupling mode builds it (docs/science.md): one train per E cell and source region
        at the source's R_e (scale 1), weight ``coupling_a * G * w[p, j]`` µS, input delay one TVB
        step, E->E between spiking regions at ``coupling_a * G * w`` µS, and the proxy's (S, R)
        integrated by forward Euler (``output.integrator``); ``tvb-multiscale-compat`` adds
        TVB_MULTISCALE_COMPAT_NODE (NEURON dt, ``params.toolbox``); set only where the node's
        ``params`` leave them unset and only the fields its backend has."""
        if not isinstance(data, dict) or not isinstance(data.get("tvb"), dict) \
                or data["tvb"].get("conventions") not in TVB_MULTISCALE_PRESETS:
            return data
        tvb = data["tvb"]
        a = float(tvb.get("coupling_a", TVBSection.model_fields["coupling_a"].default))
        model = tvb.get("model") or {}
        G = float((model.get("params") or {} if "class" in model else model).get("G", 2.0))
        dt = float(tvb.get("dt_ms", TVBSection.model_fields["dt_ms"].default))
        nodes = data.get("spiking_nodes")
        if nodes is None:
            nodes = [NodeEntry().model_dump()]
        preset = {"input": {"mode": "per_source", "scale": 1.0, "weight_uS": a * G, "delay_ms": dt},
                  "inter_region": {"weight_factor_uS": a},          # E->E between spiking regions: a*G*w
                  "output": {"integrator": "euler"}}                # the toolbox's transformer integration
        if data["tvb"]["conventions"] == "tvb-multiscale-compat":
            preset.update(TVB_MULTISCALE_COMPAT_NODE)
        from cosim import plugins
        out = []
        for n in nodes:
            if isinstance(n, dict) and (n.get("params") is None or isinstance(n.get("params"), dict)):
                try:                        # only the blocks (and fields) this backend has
                    fields = plugins.get(n.get("backend") or NodeEntry.model_fields["backend"].default) \
                        .params_model().model_fields
                except Exception:           # unknown backend: validation names it
                    fields = {}
                params = dict(n.get("params") or {})
                for block, vals in preset.items():
                    if not isinstance(vals, dict):          # a plain field (dt_ms), if this backend has it
                        if block in fields:
                            params.setdefault(block, vals)
                        continue
                    sub = getattr(fields.get(block), "annotation", None)
                    known = getattr(sub, "model_fields", {})
                    vals = {k: v for k, v in vals.items() if k in known}
                    if vals:
                        given = params.get(block) if isinstance(params.get(block), dict) else {}
                        params[block] = {**vals, **given}
                n = {**n, "params": params}
            out.append(n)
        return {**data, "spiking_nodes": out}

    @model_validator(mode="after")
    def _distinct(self) -> RunConfig:
        names = [n.name for n in self.spiking_nodes]
        if len(set(names)) != len(names) or "tvb" in names or "coordinator" in names:
            raise ValueError(f"spiking node names must be unique and not 'tvb'/'coordinator': {names}")
        seen: dict[int, str] = {}
        for n in self.spiking_nodes:
            for r in n.regions:
                if r in seen:
                    raise ValueError(f"spiking_nodes: region {r} is claimed by both {seen[r]!r} and {n.name!r}")
                seen[r] = n.name
        spiking = any(n.backend not in ("reference", "noop") for n in self.spiking_nodes)
        if self.tvb.model_class != DEFAULT_MODEL and spiking:
            from cosim.config.interfaces import find     # spiking regions need the model's interface
            find(self.tvb.model_class, self.tvb.interface)
        if spiking and self.tvb.coupling is not None:    # Difference, Kuramoto: the interface's coupling_rate
            from cosim.config.interfaces import RWW_EXC_INH, TARGET_DEPENDENT_COUPLINGS, check_coupling, find
            iface = RWW_EXC_INH if self.tvb.model_class == DEFAULT_MODEL else find(self.tvb.model_class, self.tvb.interface)
            check_coupling(iface, self.tvb.coupling.class_)
            if self.tvb.coupling.class_ in TARGET_DEPENDENT_COUPLINGS:
                for n in self.spiking_nodes:
                    inp = n.params.get("input") if isinstance(n.params, dict) else None
                    if isinstance(inp, dict) and inp.get("mode") == "per_source":
                        raise ValueError(f"spiking_nodes {n.name!r}: input.mode per_source sums source rates itself; "
                                         f"tvb.coupling {self.tvb.coupling.class_} depends on the target's own state "
                                         "and needs input.mode summed (TVB's coupling per region)")
        for n in self.spiking_nodes:       # the reference backend's per-region overrides name tvb.model's parameters
            model = n.params.get("model") if n.backend == "reference" and isinstance(n.params, dict) else None
            if isinstance(model, dict) and model:
                try:
                    if self.tvb.model_class == DEFAULT_MODEL:
                        TVBSection._known_model_params(model)
                    else:
                        from cosim.config import tvb_classes
                        try:
                            cls = tvb_classes.model_class(self.tvb.model_class)
                        except ImportError:
                            cls = None
                        if cls is not None:
                            tvb_classes.check_params(cls, model, "params.model")
                except ValueError as e:
                    raise ValueError(f"spiking_nodes[{n.name}].params.model: {e}") from None
        from cosim.config.inter_service import problem
        why = problem(self.model_dump(mode="json"))
        if why:
            raise ValueError(f"{why[0]}: {why[1]}")
        steps = self.run.duration_ms / self.tvb.dt_ms
        if steps > MAX_STEPS:
            raise ValueError(f"run.duration_ms: {self.run.duration_ms:g} ms is {steps:.3g} TVB steps of "
                             f"{self.tvb.dt_ms:g} ms; at most {MAX_STEPS:.0e} steps per run")
        if self.run.window_ms is not None:
            _require_whole(self.run.window_ms, self.tvb.dt_ms, f"run.window_ms: {self.run.window_ms} ms must be a whole "
                                                       f"number of TVB steps (tvb.dt_ms = {self.tvb.dt_ms} ms)")
        return self

    # ---- derived quantities -------------------------------------------------------------
    def spiking_regions(self) -> list[int]:
        return sorted(r for n in self.spiking_nodes for r in n.regions)

    def node(self, name: str) -> NodeEntry:
        for n in self.spiking_nodes:
            if n.name == name:
                return n
        raise KeyError(name)


_TCP = re.compile(r"^tcp://(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\*|\d{1,5})$")


def address_problem(addr: str) -> str | None:
    """None for a usable ZeroMQ endpoint (tcp://HOST:PORT, ipc://PATH, inproc://NAME), else why not."""
    if not isinstance(addr, str):
        return f"{addr!r} is not a ZeroMQ address"
    if addr.startswith(("ipc://", "inproc://")) and len(addr.split("://", 1)[1]) > 0:
        return None
    m = _TCP.match(addr)
    if not m:
        return f"{addr[:100]!r} is not a ZeroMQ address (tcp://HOST:PORT, ipc://PATH or inproc://NAME)"
    if m.group(2) != "*" and not 1 <= int(m.group(2)) <= 65535:
        return f"port {m.group(2)} of {addr!r} is not in 1..65535"
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def _require_whole(ms: float, unit_ms: float, why: str) -> None:
    if whole_ticks(ms, unit_ms) is None:
        raise ValueError(why)
