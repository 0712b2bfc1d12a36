"""Every 100+ qubit device of the installed qiskit-ibm-runtime's fake provider, by name:
`transpile --target ibm_<device>` writes QPY that the device's own target supports, and
`run --backend fake_<device>` runs the bundle with a QPU-seconds estimate.

The list is read off the provider, so a new qiskit-ibm-runtime release brings its new chips
into this test. Kept fast: the shared tiny bundle, one image, 50 shots, 4 copies per run,
and the device's noise model (Aer's `NoiseModel.from_backend`, 2-6 s per device, the bulk
of the time) built only for the chips unlike the others (Nighthawk's square lattice,
Kyoto's placeholder calibration): the rest run ``?noise=0``, the same device, target,
packing and ISA circuits, simulated ideally (test_run.py runs fake_brisbane with noise).
"""

import json
import re
from pathlib import Path

import pytest
from qiskit import qpy
from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2
from typer.testing import CliRunner

from qvit_hw.cli import app
from qvit_hw.devices import names

NOISY = ("ibm_nighthawk", "ibm_kyoto")
LARGE = sorted(
    b.name.replace("fake_", "ibm_", 1)
    for b in FakeProviderForBackendV2().backends()
    if b.num_qubits >= 100
)


def test_the_catalog_holds_every_device_of_the_fake_provider():
    provider = {b.name.replace("fake_", "ibm_", 1) for b in FakeProviderForBackendV2().backends()}
    assert provider <= set(names())
    assert {"ibm_nighthawk", "ibm_marrakesh", "ibm_kyiv", "ibm_fez"} <= set(LARGE)
    assert len(LARGE) >= 12


@pytest.mark.parametrize("device", LARGE)
def test_transpile_and_run_every_large_device_by_name(device, bundle, tmp_path):
    from qiskit_ibm_runtime import fake_provider

    fake = "fake_" + device.removeprefix("ibm_")
    runner = CliRunner()
    out = tmp_path / "transpiled"
    args = ["transpile", bundle, "--target", device, "--snapshot", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / f"transpile_{device}.json").read_text())
    row = report["qnns"][0]
    assert 1 <= row["copies"] <= row["bound"] <= report["num_qubits"] // row["n_qubits"]
    assert re.search(rf"\b{row['copies']}\s.*\b\d+/\d+/{row['bound']}\b", result.output)
    target = next(
        b for b in fake_provider.FakeProviderForBackendV2().backends() if b.name == fake
    ).target
    for spec in report["specs"]:
        with open(out / f"{spec['compiled']}.qpy", "rb") as f:
            (circuit,) = qpy.load(f)
        for inst in circuit.data:
            qargs = tuple(circuit.find_bit(q).index for q in inst.qubits)
            if inst.operation.name != "barrier":
                assert target.instruction_supported(inst.operation.name, qargs), (inst, qargs)

    run_out = tmp_path / "run"  # the full packing is checked above; 4 copies keep this fast
    backend = fake if device in NOISY else f"{fake}?noise=0"
    args = [
        "run",
        bundle,
        "--backend",
        backend,
        "--limit",
        "1",
        "--shots",
        "50",
        "--max-copies",
        "4",
    ]
    result = runner.invoke(app, [*args, "--out", str(run_out)])
    assert result.exit_code == 0, result.output
    cost = json.loads(Path(run_out / "cost.json").read_text())
    assert min(cost["packing"].values()) >= 1 and cost["qpu_seconds_estimated"] > 0
