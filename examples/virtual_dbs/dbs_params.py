"""The study's three states and its DBS protocol, shared by every backend and by examples/virtual_dbs.py."""
FIT = {"healthy": "control", "parkinson": "patient", "parkinson_dbs": "patient"}
T_SKIP_MS = 500.0        # transient left out of rates and spectra

#: STN-DBS: 130 Hz, charge-balanced biphasic pulses (+A for 0.3 ms, then -A/10 for 3 ms), injected
#: into every STN cell. A in nA == mV/ms on the Izhikevich-Hamker cell (mod/izhi_hamker.mod).
DBS_AMPLITUDE_NA = 100.0
DBS = [dict(label="dbs_stn", populations=["STN"], frequency_hz=130.0, width_ms=0.3,
            amplitude_nA=DBS_AMPLITUDE_NA, phase2_width_ms=3.0, phase2_amplitude_nA=-DBS_AMPLITUDE_NA / 10,
            onset_ms=0.0)]
