"""Devices: what a device is and how to reach it, for `transpile/` and `backends/` alike.

target.py    DeviceTarget (a qiskit Target plus calibration numbers), readout_errors
catalog.py   TARGETS and get_target: every known device by name, snapshot or live
ibm.py       IBM Quantum: fake-backend snapshots, the live target, one credential rule
             (QISKIT_IBM_TOKEN or a saved account) and `connect`
rigetti.py   Rigetti: JSON snapshots in data/, the QCS client, the live ISA
"""

from .catalog import TARGETS, get_target
from .target import DeviceTarget, from_qiskit_target, readout_errors

__all__ = ["TARGETS", "DeviceTarget", "from_qiskit_target", "get_target", "readout_errors"]
