"""Devices: what a device is and how to reach it, for `transpile/` and `backends/` alike.

catalog.py   every known device by name (`names`, `get_target`, did-you-mean), snapshot
             or live
naming.py    how every command reads a name, and its did-you-mean (difflib)
target.py    DeviceTarget (a qiskit Target plus calibration numbers), readout_errors
lattice.py   square lattice / heavy-hex recognised from the coupling map, qubit positions
ibm.py       IBM Quantum: fake-backend snapshots, the live target, one credential rule
             (QISKIT_IBM_TOKEN or a saved account) and `connect`
rigetti.py   Rigetti: JSON snapshots in data/, the QCS client, the live ISA
"""

from .catalog import get_target, names
from .target import DeviceTarget, from_qiskit_target, readout_errors

__all__ = ["DeviceTarget", "from_qiskit_target", "get_target", "names", "readout_errors"]
