"""Backends by name: options in the name, did-you-mean, reserved cloud names."""

import pytest

from qvit_hw.backends import Backend, backend_infos, get_backend, parse_name
from qvit_hw.errors import BackendError, BackendNotFoundError


def test_names_and_options():
    assert parse_name("Mock?transient=0.3&fail=1,2") == (
        "mock",
        {"transient": "0.3", "fail": "1,2"},
    )
    for name in ("statevector", "shots?seed=4", "fake_torino", "mock?inner=shots&seed=2"):
        backend = get_backend(name)
        assert isinstance(backend, Backend)
        assert backend.name == parse_name(name)[0]
    assert get_backend("shots?seed=4").seed == 4
    assert get_backend("mock?inner=shots&seed=2").inner.name == "shots"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("statevectr", "statevector"), ("fake_brisbne", "fake_brisbane"), ("shot", "shots")],
)
def test_unknown_names_suggest_the_closest(name, suggestion):
    with pytest.raises(BackendNotFoundError, match=f"did you mean {suggestion}") as info:
        get_backend(name)
    assert "`qvit-hw backends` lists them" in str(info.value)


def test_cloud_backends_are_reserved_for_the_next_release():
    for name in ("ibm_brisbane", "rigetti_ankaa_3", "rigetti_qvm", "pennylane:default.qubit"):
        with pytest.raises(BackendError, match="not available in this build"):
            get_backend(name)


def test_bad_options_name_the_backend():
    with pytest.raises(ValueError, match="backend statevector: unknown option 'seed'"):
        get_backend("statevector?seed=1")
    with pytest.raises(ValueError, match="backend: expected a name"):
        get_backend("")


def test_listing_covers_every_kind():
    names = [info.name for info in backend_infos()]
    assert names[:4] == ["statevector", "shots", "fake_<device>", "mock"]
    assert not any(info.available for info in backend_infos() if info.name.startswith("ibm"))
