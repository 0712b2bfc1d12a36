"""A backend name's options (``fake_brisbane?seed=3&noise=0``), each read once, strictly.

Values come from the name's query string (text) or from keyword arguments (any type).
Booleans accept 1/0, true/false, yes/no, on/off and nothing else; numbers must be finite;
every error names the backend and the option. `BackendOptions.done` refuses what is left,
so a misspelt option never passes silently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(value: Any, what: str) -> bool:
    """``value`` as a boolean; ValueError naming ``what`` for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{what} must be one of 1/0, true/false, yes/no, on/off, got {value!r}")


def parse_number(value: Any, what: str, kind: type[int] | type[float]) -> int | float:
    """``value`` as a finite int or float; ValueError naming ``what`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        noun = "a whole number" if kind is int else "a number"
        raise ValueError(f"{what} must be {noun}, got {value!r}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


class BackendOptions:
    """The options of one backend name; each ``bool``/``int``/... call takes one away."""

    def __init__(self, backend: str, values: Mapping[str, Any]) -> None:
        self.backend = backend
        self._values = dict(values)

    def __contains__(self, key: str) -> bool:
        return key in self._values

    def _what(self, key: str) -> str:
        return f"backend {self.backend}: option {key}"

    def raw(self, key: str, default: Any = None) -> Any:
        return self._values.pop(key, default)

    def str(self, key: str, default: str | None = None) -> str | None:
        value = self._values.pop(key, None)
        return default if value is None else str(value)

    def bool(self, key: str, default: bool) -> bool:
        if key not in self._values:
            return default
        return parse_bool(self._values.pop(key), self._what(key))

    def int(self, key: str, default: int | None, *, minimum: int | None = None) -> int | None:
        return self._number(key, default, int, minimum)  # type: ignore[return-value]

    def float(
        self, key: str, default: float | None, *, minimum: float | None = None
    ) -> float | None:
        return self._number(key, default, float, minimum)

    def _number(
        self, key: str, default: Any, kind: type[int] | type[float], minimum: Any
    ) -> int | float | None:
        value = self._values.pop(key, None)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return default
        number = parse_number(value, self._what(key), kind)
        if minimum is not None and number < minimum:
            raise ValueError(f"{self._what(key)} must be >= {minimum}, got {value!r}")
        return number

    def rest(self) -> dict[str, Any]:
        """Every option not read yet (for backends that pass them on, e.g. to a device)."""
        out, self._values = self._values, {}
        return out

    def done(self) -> None:
        """Refuse any option nobody read."""
        if self._values:
            raise ValueError(f"backend {self.backend}: unknown option {sorted(self._values)[0]!r}")
