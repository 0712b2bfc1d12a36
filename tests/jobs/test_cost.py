"""The QPU-time model: durations from the device's own calibration, shots x per shot."""

import pytest

from qvit_hw.circuit import chain
from qvit_hw.devices import get_target
from qvit_hw.devices.ibm import fake_backend
from qvit_hw.jobs.cost import circuit_seconds, qpu_seconds, rep_delay
from qvit_hw.transpile import compile_qnn


def test_a_packed_circuit_lasts_as_long_as_its_longest_copy():
    device = get_target("ibm_brisbane", live=False)
    one = compile_qnn(chain(4), device, max_copies=1)
    many = compile_qnn(chain(4), device, packing="max")
    t_one, t_many = circuit_seconds(one.circuit, device), circuit_seconds(many.circuit, device)
    measure = device.target["measure"][(one.placements[0][0],)].duration
    assert measure < t_one < 20e-6  # a few ECRs and one readout
    assert t_one <= t_many < 2 * t_one  # copies run side by side, not one after another


def test_devices_without_durations_get_no_estimate():
    device = get_target("rigetti_ankaa_3", live=False)
    assert circuit_seconds(compile_qnn(chain(4), device, max_copies=1).circuit, device) is None
    assert qpu_seconds(10, 1000, 1, None, 0.0) is None


def test_quantum_seconds_are_shots_times_rep_delay_plus_duration():
    delay = rep_delay(fake_backend("ibm_brisbane"))
    assert delay == pytest.approx(250e-6)
    assert qpu_seconds(40, 1000, 2, delay + 10e-6, 1.5) == pytest.approx(40 * 1000 * 260e-6 + 3)
