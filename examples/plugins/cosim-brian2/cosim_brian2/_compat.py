"""Import Brian2 on the NumPy it is installed with.

Brian2 2.9.0 (the last release for Python 3.11) reads ``numpy.ndarray.ptp`` while defining its
``Quantity`` class; NumPy 2.4 removed that method, so ``import brian2`` fails there with an
AttributeError. Brian2's own sources now guard the name; until a release for Python 3.11 does,
this loader compiles that one module with ``np.ndarray.ptp`` read as ``np.ptp`` (the same
function; only Quantity.ptp uses it). Nothing on disk changes, and on a NumPy that still has
``ndarray.ptp`` (or a fixed Brian2, where the text is absent) the module loads untouched.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

import numpy as np

_MODULE = "brian2.units.fundamentalunits"
_OLD, _NEW = "wrap_function_keep_dimensions(np.ndarray.ptp)", "wrap_function_keep_dimensions(np.ptp)"


class _PtpLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name != _MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        self._orig = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        src = self._orig.get_source(_MODULE).replace(_OLD, _NEW)
        exec(compile(src, module.__spec__.origin, "exec"), module.__dict__)


def import_brian2():
    """``brian2``, numpy code generation (nothing compiles), quiet logs."""
    if "brian2" not in sys.modules and not hasattr(np.ndarray, "ptp"):
        finder = _PtpLoader()
        sys.meta_path.insert(0, finder)
        try:
            import brian2  # noqa: F401
        finally:
            sys.meta_path.remove(finder)
    import brian2
    brian2.prefs.codegen.target = "numpy"      # pure NumPy: no compiler, no cache dir, same on any machine
    brian2.BrianLogger.suppress_name("method_choice")
    return brian2
