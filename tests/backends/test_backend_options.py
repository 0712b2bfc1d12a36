"""Backend options in the name are strict: booleans, finite numbers, named in errors."""

import pytest

from qvit_hw.backends import get_backend
from qvit_hw.backends.options import BackendOptions, parse_bool


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fake_brisbane?noise=O", "option noise must be one of 1/0, true/false"),  # letter O
        ("shots?seed=abc", "backend shots: option seed must be a whole number, got 'abc'"),
        ("shots?seed=1.5", "option seed must be a whole number"),
        ("mock?latency=nan", "latency must be >= 0 and finite"),
        ("mock?latency=inf", "latency must be >= 0 and finite"),
        ("ibm_fez?local=maybe", "backend ibm_fez: option local must be one of"),
        ("statevector?seed=1", "backend statevector: unknown option 'seed'"),
        ("pennylane:default.qubit?shots=0", "option shots must be >= 1"),
    ],
)
def test_bad_options_are_refused_naming_the_option(name, message):
    with pytest.raises(ValueError, match=message):
        get_backend(name)


@pytest.mark.parametrize("text", ["1", "true", "Yes", "ON", " 1 "])
def test_true_spellings(text):
    assert parse_bool(text, "x") is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off"])
def test_false_spellings(text):
    assert parse_bool(text, "x") is False


def test_ideal_device_option_switches_noise_off():
    assert get_backend("fake_brisbane?noise=off").noise is False
    assert get_backend("fake_brisbane").noise is True


def test_each_option_is_read_once_and_leftovers_are_refused():
    opts = BackendOptions("b", {"seed": "3", "x": "1"})
    assert opts.int("seed", 0) == 3 and opts.int("seed", 7) == 7  # taken away once read
    with pytest.raises(ValueError, match="backend b: unknown option 'x'"):
        opts.done()
    assert BackendOptions("b", {"t": "1e-3"}).float("t", None) == pytest.approx(1e-3)
