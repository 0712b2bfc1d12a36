"""Helpers for tests of compiled templates: the targets whose ISAs they cover, and the
operator of a template's first copy."""

from qiskit.quantum_info import Operator

# IBM ECR (Eagle), CZ (Heron r1, r2); Rigetti iSWAP (Ankaa), CZ (Cepheus)
TARGETS = ("ibm_brisbane", "ibm_torino", "ibm_fez", "rigetti_ankaa_3", "rigetti_cepheus_1_108q")


def unitary_of(compiled, values):
    """The operator of the template's first copy alone (its n qubits), parameters bound."""
    circuit = compiled.copy_circuit(0)
    params = list(compiled.circuit.parameters)
    bound = circuit.assign_parameters({p: values[params.index(p)] for p in circuit.parameters})
    return Operator(bound.remove_final_measurements(inplace=False))
