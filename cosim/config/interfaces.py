"""A declared interface per whole-brain model: what crosses between a TVB model and a spiking region.

For each tvb-library model class an interface states

- ``rate``: the quantity sent to spiking regions as a rate in Hz (``R_e`` on the wire): a state
  variable times a scale (MontbrioPazoRoxin's ``r`` in kHz x 1000), or a function of the state
  and of TVB's node coupling (the reduced Wong-Wang models' H(I), JansenRit's sigmoid);
- ``proxy_vars``: the state variables of a proxy region that the spiking side writes (the others
  keep TVB's own integration of the proxy);
- ``transformer``: how population spike rates (``R_e``, ``R_i`` in Hz per TVB step, what every
  spiking backend sends) become those state variables;
- ``coupling_rate``: for couplings that cannot be pre-summed because they depend on the target's
  own state (Difference, Kuramoto), how TVB's coupling value ``c`` of a spiking region (its own
  ``pre``/``post``, computed by the TVB node) becomes ``coupling/R_e`` in Hz*weight, the unit the
  spiking side's input transformer already divides by the region's incoming weight. For the
  shipped interfaces it is the slope of the rate map times ``c``: with Difference,
  ``slope * c = a * sum_j w[p, j] * (R_j - R_p)`` (the offset of an affine map cancels).

Interfaces are found the way backends are: the entry-point group ``cosim.models`` (name -> a
:class:`ModelInterface`, or a callable returning one), listed by ``cosim models``. A config may
declare one for any other model (``tvb.interface``, :func:`from_config`). Pure NumPy: the
coordinator and spiking services import this without tvb-library.

ReducedWongWangExcInh's interface is the project's original one and stays where it was built:
the TVB node computes its rates with a numba copy of the model's dfun (bit-identical to the
``H`` TVB computes) and the spiking side integrates the proxy's ``S_e``/``S_i`` with
:class:`cosim.sdk.transformers.RateProxy`; ``legacy=True`` marks it.
"""
from __future__ import annotations

import difflib
import importlib.metadata as md
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

import numpy as np

GROUP = "cosim.models"

#: rate(states, coupling, params) -> Hz; states: {state var: (T, N)}, coupling: TVB's node
#: coupling of the first coupled variable (T, N) (a*sum + b already applied), params: {name: (N,)}
RateFn = Callable[[dict, np.ndarray, dict], np.ndarray]
#: coupling_rate(c, params) -> Hz*weight; c: TVB's coupling (post(sum_j w pre(x_p, x_j))) of the
#: first coupled variable for spiking targets (T, n), params: {name: (n,)} at those targets
CouplingRateFn = Callable[[np.ndarray, dict], np.ndarray]

#: tvb-library couplings whose ``pre`` reads the target's own state (x_i): not pre-summable. The TVB
#: node also finds a user's coupling of this kind by probing its ``pre`` (adapter.target_dependent)
TARGET_DEPENDENT_COUPLINGS = ("Difference", "Kuramoto")


class Transformer:
    """Population rates (Hz) -> proxy state variables, window by window (stateful if needed)."""

    def __init__(self, n_regions: int, dt_ms: float, params: dict[str, np.ndarray]):
        self.n, self.dt, self.params = n_regions, float(dt_ms), params

    def __call__(self, rates: dict[str, np.ndarray], stand_in: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``rates``: {"R_e": (W, n), "R_i": (W, n) if sent}; ``stand_in``: TVB's own values of the
        proxies' state variables for the same steps (W, n). Returns {proxy var: (W, n)}."""
        raise NotImplementedError

    def get_state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        pass


class Affine(Transformer):
    """``var = scale * R + offset`` per proxy variable (R_e or R_i), clipped to ``[lo, hi]``."""

    def __init__(self, n_regions, dt_ms, params, maps: dict[str, tuple[str, float, float, float, float]]):
        super().__init__(n_regions, dt_ms, params)
        self.maps = maps        # var -> (source rate, scale, offset, lo, hi)

    def __call__(self, rates, stand_in):
        return {v: np.clip(scale * np.asarray(rates[src], np.float64) + off, lo, hi)
                for v, (src, scale, off, lo, hi) in self.maps.items()}


@dataclass(frozen=True)
class ModelInterface:
    """What crosses between one TVB model and a spiking region (module docstring)."""
    model: str                                   # tvb-library class name (or a user's dotted path)
    rate_doc: str                                # the rate in Hz, in words (cosim models, docs/models.md)
    rate: RateFn | None                          # None: legacy (the TVB node's numba RWW rates)
    proxy_vars: tuple[str, ...]                  # state variables the spiking side writes
    transformer: Callable[[int, float, dict], Transformer] | None   # (n, dt, params) -> Transformer
    transformer_doc: str
    needs_R_i: bool = False                      # the transformer also reads the inhibitory rate
    legacy: bool = False
    coupling_hint: str = "Linear"                # the coupling its example uses
    coupling_rate: CouplingRateFn | None = None  # TVB coupling -> coupling/R_e (Hz*weight), module docstring
    coupling_rate_doc: str = ""
    citation: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# ---- the shipped interfaces ------------------------------------------------------------------

def _H(x, a, b, d):
    y = a * x - b
    return y / (1 - np.exp(-d * y))


def _rww_excio_rate(s, c, p):
    # tvb.simulator.models.wong_wang.ReducedWongWang.dfun: x = w J_N S + I_o + J_N c_0 (no local
    # coupling); H in kHz (a 0.270 nC^-1, b 0.108 kHz): x 1000 for Hz
    x = p["w"] * p["J_N"] * s["S"] + p["I_o"] + p["J_N"] * c
    return 1000.0 * _H(x, p["a"], p["b"], p["d"])


class _WongWangS(Transformer):
    """ReducedWongWang's own S equation driven by the measured rate: dS/dt = -S/tau_s +
    (1 - S) gamma H, with H = R_e / 1000 (kHz) constant over a TVB step: the exact exponential
    update of this linear equation (as cosim.sdk.transformers.RateProxy does for ExcInh)."""

    def __init__(self, n_regions, dt_ms, params):
        super().__init__(n_regions, dt_ms, params)
        self.S = None

    def __call__(self, rates, stand_in):
        R = np.asarray(rates["R_e"], np.float64)
        if self.S is None:
            self.S = np.asarray(stand_in["S"][0], np.float64).copy()
        tau, gam = self.params["tau_s"], self.params["gamma"]
        out = np.empty_like(R)
        for i in range(R.shape[0]):
            g = gam * np.maximum(R[i], 0.0) / 1000.0
            k = 1.0 / tau + g
            s_inf = g / k
            self.S = s_inf + (self.S - s_inf) * np.exp(-k * self.dt)
            out[i] = self.S
        return {"S": np.clip(out, 0.0, 1.0)}

    def get_state(self):
        return {} if self.S is None else {"S": self.S.copy()}

    def set_state(self, d):
        if "S" in d:
            self.S = np.array(d["S"], copy=True)


#: JansenRit's sigmoid tops at 2 nu_max = 5 spikes/s, below what spiking regions fire; the
#: interface maps the sigmoid's fraction of its maximum onto 0 .. JR_RATE_MAX_HZ (a choice)
JR_RATE_MAX_HZ = 50.0
JR_FRACTION_CLIP = 1e-3


def _jr_sigmoid_hz(s, p):
    return JR_RATE_MAX_HZ / (1.0 + np.exp(p["r"] * (p["v0"] - (s["y1"] - s["y2"]))))


class _JansenRitInverse(Transformer):
    """JansenRit through its sigmoid: the measured rate R (Hz) of the pyramidal population, as a
    fraction f = R / JR_RATE_MAX_HZ of the maximum, is what SigmoidalJansenRit's ``pre`` computes
    (over 2 nu_max) from y1 - y2, so y1 = y2 + v0 - ln(1/f - 1) / r (f clipped to
    [1e-3, 1 - 1e-3]); y2 stays TVB's."""

    def __call__(self, rates, stand_in):
        p = self.params
        f = np.clip(np.asarray(rates["R_e"], np.float64) / JR_RATE_MAX_HZ, JR_FRACTION_CLIP, 1 - JR_FRACTION_CLIP)
        return {"y1": stand_in["y2"] + p["v0"] - np.log(1.0 / f - 1.0) / p["r"]}


#: WilsonCowan's E and I are fractions of active cells; the rate of a fully active population
WC_RATE_MAX_HZ = 100.0
#: Generic2dOscillator is phenomenological: an affine, invertible map V <-> rate (V in about [-2, 2])
G2D_HZ_PER_V, G2D_V0 = 10.0, -2.0


def _shipped() -> dict[str, ModelInterface]:
    return {
        "ReducedWongWangExcInh": ModelInterface(
            "ReducedWongWangExcInh", "R_e = H(I_e), the excitatory pool's rate (Hz), from S_e, S_i and the coupling",
            None, ("S_e", "S_i"), None,
            "S_e (and S_i) from R_e (R_i) by the model's own S equations, integrated on the spiking side "
            "(cosim.sdk.transformers.RateProxy)", legacy=True, citation="Deco et al. 2014, J Neurosci 34:7886"),
        "ReducedWongWang": ModelInterface(
            "ReducedWongWang", "R = 1000 H(x), x = w J_N S + I_o + J_N c (Hz)", _rww_excio_rate, ("S",),
            lambda n, dt, p: _WongWangS(n, dt, p),
            "S from R_e by dS/dt = -S/tau_s + (1 - S) gamma R_e/1000, exact per TVB step",
            citation="Wong & Wang 2006; Deco et al. 2013, J Neurosci 33:11239"),
        "MontbrioPazoRoxin": ModelInterface(
            "MontbrioPazoRoxin", "R = 1000 r (r in kHz: tau is in ms)", lambda s, c, p: 1000.0 * s["r"], ("r",),
            lambda n, dt, p: Affine(n, dt, p, {"r": ("R_e", 1e-3, 0.0, 0.0, np.inf)}),
            "r = R_e / 1000; V keeps TVB's integration of the proxy",
            coupling_rate=lambda c, p: 1000.0 * c, coupling_rate_doc="1000 c",
            citation="Montbrió, Pazó & Roxin 2015, Phys Rev X 5:021028"),
        "WilsonCowan": ModelInterface(
            "WilsonCowan", f"R = {WC_RATE_MAX_HZ:g} E (E: fraction of active excitatory cells)",
            lambda s, c, p: WC_RATE_MAX_HZ * s["E"], ("E", "I"),
            lambda n, dt, p: Affine(n, dt, p, {"E": ("R_e", 1 / WC_RATE_MAX_HZ, 0.0, 0.0, 1.0),
                                                "I": ("R_i", 1 / WC_RATE_MAX_HZ, 0.0, 0.0, 1.0)}),
            f"E = R_e / {WC_RATE_MAX_HZ:g} Hz, I = R_i / {WC_RATE_MAX_HZ:g} Hz (normalised rates, clipped to [0, 1])",
            needs_R_i=True, coupling_rate=lambda c, p: WC_RATE_MAX_HZ * c,
            coupling_rate_doc=f"{WC_RATE_MAX_HZ:g} c", citation="Wilson & Cowan 1972, Biophys J 12:1"),
        "JansenRit": ModelInterface(
            "JansenRit", f"R = {JR_RATE_MAX_HZ:g} / (1 + exp(r (v0 - (y1 - y2)))) Hz: the pyramidal sigmoid's "
                         f"fraction of its maximum, times {JR_RATE_MAX_HZ:g} Hz",
            lambda s, c, p: _jr_sigmoid_hz(s, p), ("y1",), lambda n, dt, p: _JansenRitInverse(n, dt, p),
            f"y1 = y2 + v0 - ln(1/f - 1) / r, f = R_e / {JR_RATE_MAX_HZ:g} Hz: the measured rate through the inverse "
            "of the sigmoid",
            coupling_hint="SigmoidalJansenRit", citation="Jansen & Rit 1995, Biol Cybern 73:357"),
        "Generic2dOscillator": ModelInterface(
            "Generic2dOscillator", f"R = max(0, {G2D_HZ_PER_V:g} (V - ({G2D_V0:g}))) Hz (a phenomenological map)",
            lambda s, c, p: np.maximum(0.0, G2D_HZ_PER_V * (s["V"] - G2D_V0)), ("V",),
            lambda n, dt, p: Affine(n, dt, p, {"V": ("R_e", 1 / G2D_HZ_PER_V, G2D_V0, -np.inf, np.inf)}),
            f"V = R_e / {G2D_HZ_PER_V:g} + ({G2D_V0:g}); W keeps TVB's integration",
            coupling_hint="Difference", coupling_rate=lambda c, p: G2D_HZ_PER_V * c,
            coupling_rate_doc=f"{G2D_HZ_PER_V:g} c", citation="Sanz-Leon et al. 2015, NeuroImage 111:385"),
    }


SHIPPED = _shipped()
#: the shipped interfaces as entry points name them (pyproject.toml, group cosim.models)
RWW_EXC_INH = SHIPPED["ReducedWongWangExcInh"]
RWW_EXC_IO = SHIPPED["ReducedWongWang"]
MONTBRIO_PAZO_ROXIN = SHIPPED["MontbrioPazoRoxin"]
WILSON_COWAN = SHIPPED["WilsonCowan"]
JANSEN_RIT = SHIPPED["JansenRit"]
GENERIC_2D_OSCILLATOR = SHIPPED["Generic2dOscillator"]


def installed() -> dict[str, ModelInterface]:
    """Every interface: the shipped ones and those of installed packages (entry points ``cosim.models``)."""
    out = dict(SHIPPED)
    for ep in md.entry_points(group=GROUP):
        if ep.name in out and ep.value.startswith("cosim.config.interfaces"):
            continue
        obj = ep.load()
        obj = obj() if callable(obj) and not isinstance(obj, ModelInterface) else obj
        if isinstance(obj, ModelInterface):
            out[ep.name] = obj
    return out


def find(model_class: str, declared: dict | None = None) -> ModelInterface:
    """The interface of ``model_class``: the config's own declaration first, then the installed
    ones; a ValueError of one line saying what to declare if there is none."""
    if declared:
        return from_config(model_class, declared)
    known = SHIPPED if model_class in SHIPPED else installed()
    short = model_class.rsplit(".", 1)[-1]
    if model_class in known:
        return known[model_class]
    if short in known and "." in model_class:
        return known[short]
    if "." in model_class:           # a user's subclass of a model with an interface inherits it
        import importlib
        mod, _, attr = model_class.rpartition(".")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            cls = None
        for base in getattr(cls, "__mro__", ())[1:]:
            if base.__name__ in known and base.__module__.startswith("tvb."):
                return known[base.__name__]
    close = difflib.get_close_matches(short, list(known), n=3)
    raise ValueError(f"tvb.model.class {model_class!r} has no spiking interface: declare tvb.interface "
                     "{rate: {var: <state variable>, scale: <Hz per unit>}, proxy: {<state variable>: "
                     "{from: R_e, scale: <unit per Hz>}}}" + (f" (interfaces exist for {close})" if close else ""))


def from_config(model_class: str, d: dict) -> ModelInterface:
    """A user's interface declared in the config (``tvb.interface``):

    ``rate: {var: r, scale: 1000, offset: 0}`` (R = max(0, scale var + offset) Hz) and
    ``proxy: {r: {from: R_e, scale: 0.001, offset: 0, min: 0, max: .inf}, ...}``; optionally
    ``coupling_rate: {scale: 1000}`` (Hz*weight per unit of TVB's coupling; default: the rate's
    scale), used with couplings that depend on the target's own state (Difference, Kuramoto)."""
    rate = d.get("rate") or {}
    var = rate.get("var")
    if not isinstance(var, str):
        raise ValueError("tvb.interface.rate.var: name the state variable sent to spiking regions as a rate")
    scale, off = float(rate.get("scale", 1.0)), float(rate.get("offset", 0.0))
    maps = {}
    for v, m in (d.get("proxy") or {}).items():
        src = m.get("from", "R_e")
        if src not in ("R_e", "R_i"):
            raise ValueError(f"tvb.interface.proxy.{v}.from: {src!r} is not R_e or R_i")
        maps[v] = (src, float(m.get("scale", 1.0)), float(m.get("offset", 0.0)),
                   float(m.get("min", -np.inf)), float(m.get("max", np.inf)))
    if not maps:
        raise ValueError("tvb.interface.proxy: name at least one state variable the spiking side writes")
    cr = d.get("coupling_rate") or {}
    if not isinstance(cr, dict) or set(cr) - {"scale"}:
        raise ValueError("tvb.interface.coupling_rate: give {scale: <Hz*weight per unit of TVB's coupling>}")
    cscale = float(cr.get("scale", scale))
    return ModelInterface(model_class, f"R = max(0, {scale:g} {var} + {off:g}) Hz (declared in the config)",
                          lambda s, c, p: np.maximum(0.0, scale * s[var] + off), tuple(maps),
                          lambda n, dt, p: Affine(n, dt, p, maps),
                          "declared: " + ", ".join(f"{v} = {s:g} {src} + {o:g}" for v, (src, s, o, _, _) in maps.items()),
                          needs_R_i=any(m[0] == "R_i" for m in maps.values()),
                          coupling_rate=lambda c, p: cscale * c, coupling_rate_doc=f"{cscale:g} c (declared)",
                          extra={"declared": {"rate_var": var}})


def check_declared_vars(iface: ModelInterface, state_vars: tuple[str, ...]) -> None:
    """Every variable an interface names exists in the model (one line with close matches)."""
    names = list(iface.proxy_vars) + ([iface.extra["declared"]["rate_var"]] if "declared" in iface.extra else [])
    for v in names:
        if v not in state_vars:
            close = difflib.get_close_matches(v, state_vars, n=3)
            raise ValueError(f"tvb.interface: {v!r} is not a state variable of {iface.model}; "
                             f"it has {list(state_vars)}" + (f" (close: {close})" if close else ""))


def check_coupling(iface: ModelInterface, coupling_class: str, target_dependent: bool | None = None) -> None:
    """A coupling that depends on the target's own state (``target_dependent``; None: one of
    TARGET_DEPENDENT_COUPLINGS by name) needs the interface's ``coupling_rate`` (one line saying
    what to do otherwise)."""
    short = coupling_class.rsplit(".", 1)[-1]
    if target_dependent is None:
        target_dependent = short in TARGET_DEPENDENT_COUPLINGS
    if target_dependent and iface.coupling_rate is None:
        raise ValueError(f"tvb.coupling {short} depends on the target's own state; the {iface.model} interface "
                         "declares no coupling_rate for spiking regions: use a pre-summable coupling (Linear, "
                         "Sigmoidal, ...) or the reference backend"
                         + ("" if iface.legacy else ", or declare tvb.interface with coupling_rate"))
