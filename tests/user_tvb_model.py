"""A user's own tvb-library model for tests/test_tvb_generic.py: MontbrioPazoRoxin with the
excitability eta shifted by a fixed amount inside dfun (a model change, not a parameter change)."""
import numpy as np
from tvb.simulator.models import MontbrioPazoRoxin


class ShiftedMPR(MontbrioPazoRoxin):
    SHIFT = 0.3

    def dfun(self, state_variables, coupling, local_coupling=0.0):
        eta = self.eta
        try:
            self.eta = np.asarray(eta) + self.SHIFT
            return super().dfun(state_variables, coupling, local_coupling)
        finally:
            self.eta = eta
