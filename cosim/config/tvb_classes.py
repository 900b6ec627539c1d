"""tvb-library classes named in the config, resolved and checked against what each class declares.

``tvb.model.class``, ``tvb.coupling.class``, ``tvb.integrator.class`` and the stimulus'
``equation.class`` name tvb-library classes (a model may also be a dotted path to a user's
``tvb.simulator.models.base.Model`` subclass); their ``params`` must be traits the class
declares. A wrong name is one ValueError line naming it, with close matches (difflib).

tvb-library is imported only when the config names something beyond the project's original
model (the coordinator validates the default config without it); when it is not installed the
check is left to the TVB node, which fails with the same line.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any

#: traits of a model that are not parameters
NOT_PARAMS = {"gid", "state_variable_range", "state_variable_boundaries", "variables_of_interest",
              "parameter_names", "state_variable_dfuns", "coupling_terms", "title", "tags"}
DEFAULT_MODEL = "ReducedWongWangExcInh"


def _close(name: str, known, what: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f"{name!r} is not {what}" + (f"; close: {', '.join(close)}" if close else "")


def _classes(module, base) -> dict[str, type]:
    return {k: v for k, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, base) and v is not base and not k.startswith("_")}


def model_class(name: str) -> type:
    from tvb.simulator import models
    from tvb.simulator.models.base import Model
    if "." in name:
        mod, _, attr = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"tvb.model.class: cannot import {name!r}: {e}") from None
        if not (isinstance(cls, type) and issubclass(cls, Model)):
            raise ValueError(f"tvb.model.class: {name!r} is not a tvb.simulator.models.base.Model subclass")
        return cls
    known = [m.value for m in models.ModelsEnum if m != models.ModelsEnum.BASE_MODEL]
    if name not in known:
        raise ValueError("tvb.model.class: " + _close(name, known, "a tvb-library model"))
    return getattr(models, name)


def coupling_class(name: str) -> type:
    from tvb.simulator import coupling
    known = _classes(coupling, coupling.Coupling)
    if name not in known:
        raise ValueError("tvb.coupling.class: " + _close(name, known, "a tvb-library coupling"))
    return known[name]


def integrator_class(name: str) -> type:
    from tvb.simulator import integrators
    known = {k: v for k, v in _classes(integrators, integrators.Integrator).items()
             if not k.startswith(("Integrator", "Intermediate"))}
    if name not in known:
        raise ValueError("tvb.integrator.class: " + _close(name, known, "a tvb-library integrator"))
    return known[name]


def equation_class(name: str) -> type:
    from tvb.datatypes import equations
    known = _classes(equations, equations.TemporalApplicableEquation)
    if name not in known:
        raise ValueError("tvb.stimulus.equation.class: " + _close(name, known, "a tvb-library temporal equation"))
    return known[name]


def params_of(cls: type) -> set[str]:
    return set(getattr(cls, "declarative_attrs", ())) - NOT_PARAMS


def check_params(cls: type, params: dict, where: str) -> None:
    known = params_of(cls)
    for k in params:
        if k not in known:
            raise ValueError(f"{where}: " + _close(k, known, f"a parameter of {cls.__name__}")
                             + ("" if difflib.get_close_matches(k, list(known), cutoff=0.5)
                                else f"; it has {sorted(known)}"))


def equation_params(cls: type) -> set[str]:
    return set(dict(cls().parameters)) if hasattr(cls(), "parameters") else set()


def needs_tvb(sec) -> bool:
    return (sec.model_class != DEFAULT_MODEL or sec.coupling is not None or sec.integrator.class_ is not None
            or sec.stimulus is not None)


def check(sec) -> None:
    """Raise ValueError (one line) for a class or parameter the config names that does not exist."""
    if not needs_tvb(sec):
        return
    try:
        import tvb.simulator.models  # noqa: F401
    except ImportError:          # checked by the TVB node, where tvb-library is installed
        return
    m = model_class(sec.model_class)
    check_params(m, sec.model, "tvb.model.params")
    if sec.coupling is not None:
        check_params(coupling_class(sec.coupling.class_), sec.coupling.params, "tvb.coupling.params")
    if sec.integrator.class_ is not None:
        integrator_class(sec.integrator.class_)
    nvar = len(m().state_variables)
    nz = sec.integrator.noise
    if nz is not None and isinstance(nz.nsig, list) and len(nz.nsig) not in (1, nvar):
        raise ValueError(f"tvb.integrator.noise.nsig: {len(nz.nsig)} values for the {nvar} state variables of {m.__name__}")
    for k, v in sec.model.items():
        if isinstance(v, list) and len(v) == 0:
            raise ValueError(f"tvb.model.params.{k}: an empty list")
    if sec.stimulus is not None:
        eq = equation_class(sec.stimulus.equation.class_)
        known = equation_params(eq)
        for k in sec.stimulus.equation.params:
            if k not in known:
                raise ValueError("tvb.stimulus.equation.params: " + _close(k, known, f"a parameter of {eq.__name__}")
                                 + f"; it has {sorted(known)}")
    if sec.interface:
        from cosim.config.interfaces import find, check_declared_vars
        check_declared_vars(find(sec.model_class, sec.interface), tuple(m().state_variables))


def build(kind: str, spec: Any, **extra):
    """An instance of a config's class spec with array-valued parameters (TVB's traits are NArrays)."""
    import numpy as np
    cls = {"coupling": coupling_class, "equation": equation_class}[kind](spec.class_)
    if kind == "equation":
        return cls(parameters={k: float(v) for k, v in spec.params.items()})
    return cls(**{k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in spec.params.items()}, **extra)
