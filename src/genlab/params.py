"""What a setting may be: declarative ranges, checked once where settings enter genlab.

Families declare the valid values of their hyperparameters in a table beside their
defaults (`GenerativeModel.hparam_ranges`), data sets those of their options, and the
trainer those of its settings:

    hparam_ranges = {"latent_dim": Int(1), "beta": Float(0), "likelihood": OneOf("auto", "bernoulli"),
                     "hidden": Ints(1), "reg_covar": Float(0, none=True)}

`check_settings(values, table, where)` checks a mapping of user values (from `--set`, a
config file or Python) against a table and raises one `ConfigError` naming the setting,
the value and what it may be:

    invalid latent_dim=0 for 'vae' (must be an integer >= 1)

`describe()` gives the same words for listings (`genlab models vae`).
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Optional

from .errors import ConfigError


class Check:
    """One setting's valid values; `none=True` also admits None (a family's "choose for me")."""

    none = False

    def ok(self, value) -> bool:
        raise NotImplementedError

    def what(self) -> str:
        raise NotImplementedError

    def valid(self, value) -> bool:
        return (value is None and self.none) or (value is not None and self.ok(value))

    def describe(self) -> str:
        return self.what() + (" or null" if self.none else "")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _bounds(low, high, low_open=False, high_open=False) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def _within(v, low, high, low_open, high_open) -> bool:
    if low is not None and (v < low or (low_open and v == low)):
        return False
    if high is not None and (v > high or (high_open and v == high)):
        return False
    return True


class Int(Check):
    """An integer in [low, high] (either end may be None: unbounded)."""

    def __init__(self, low: Optional[int] = None, high: Optional[int] = None, *, none: bool = False):
        self.low, self.high, self.none = low, high, none

    def ok(self, v) -> bool:
        return _is_int(v) and _within(v, self.low, self.high, False, False)

    def what(self) -> str:
        b = _bounds(self.low, self.high)
        return "an integer" + (f" {b}" if b else "")


class Float(Check):
    """A finite number in [low, high] (open ends with low_open / high_open); integers are numbers too."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *, low_open: bool = False,
                 high_open: bool = False, none: bool = False):
        self.low, self.high, self.low_open, self.high_open, self.none = low, high, low_open, high_open, none

    def ok(self, v) -> bool:
        return _is_number(v) and _within(v, self.low, self.high, self.low_open, self.high_open)

    def what(self) -> str:
        b = _bounds(self.low, self.high, self.low_open, self.high_open)
        return "a number" + (f" {b}" if b else "")


class Bool(Check):
    def __init__(self, *, none: bool = False):
        self.none = none

    def ok(self, v) -> bool:
        return isinstance(v, bool)

    def what(self) -> str:
        return "true or false"


class OneOf(Check):
    """One of the given names."""

    def __init__(self, *choices: str, none: bool = False):
        self.choices, self.none = tuple(choices), none

    def ok(self, v) -> bool:
        return isinstance(v, str) and v in self.choices

    def what(self) -> str:
        return "one of " + ", ".join(self.choices)


class Text(Check):
    """A name the receiving code checks itself (with its own did-you-mean)."""

    def __init__(self, *, none: bool = False):
        self.none = none

    def ok(self, v) -> bool:
        return isinstance(v, str) and v != ""

    def what(self) -> str:
        return "a name"


class Ints(Check):
    """A list of integers, each in [low, high], with at least `min_len` entries (e.g. layer widths)."""

    def __init__(self, low: Optional[int] = 1, high: Optional[int] = None, *, min_len: int = 0,
                 none: bool = False):
        self.low, self.high, self.min_len, self.none = low, high, min_len, none

    def ok(self, v) -> bool:
        return (isinstance(v, (list, tuple)) and len(v) >= self.min_len
                and all(_is_int(e) and _within(e, self.low, self.high, False, False) for e in v))

    def what(self) -> str:
        b = _bounds(self.low, self.high)
        return (f"a list of {'at least ' + str(self.min_len) + ' ' if self.min_len else ''}integers"
                + (f" {b}" if b else ""))


class Floats(Check):
    """A list of `length` finite numbers, each in [low, high] (e.g. Adam's betas)."""

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *, high_open: bool = False,
                 length: Optional[int] = None, none: bool = False):
        self.low, self.high, self.high_open, self.length, self.none = low, high, high_open, length, none

    def ok(self, v) -> bool:
        return (isinstance(v, (list, tuple)) and (self.length is None or len(v) == self.length)
                and all(_is_number(e) and _within(e, self.low, self.high, False, self.high_open) for e in v))

    def what(self) -> str:
        b = _bounds(self.low, self.high, False, self.high_open)
        return f"a list of {self.length or ''} numbers".replace("  ", " ") + (f" {b}" if b else "")


class Either(Check):
    """Any of several checks (e.g. attention: true/false or a list of resolutions)."""

    def __init__(self, *checks: Check):
        self.checks = checks
        self.none = any(c.none for c in checks)

    def ok(self, v) -> bool:
        return any(c.valid(v) for c in self.checks)

    def what(self) -> str:
        return " or ".join(c.what() for c in self.checks)


class Anything(Check):
    """Not checked here (e.g. an nn.Module given from Python); `what` says what it should be."""

    none = True

    def __init__(self, what: str = "any value"):
        self._what = what

    def ok(self, v) -> bool:
        return True

    def what(self) -> str:
        return self._what

    def describe(self) -> str:
        return self._what


def check_like(default) -> Optional[Check]:
    """A check from a default value's type (an option with no declared range): a bool wants a
    bool, an int an integer, a float a finite number, a string a string; None: not checked."""
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Float()
    if isinstance(default, str):
        return Text()
    return None


def check_settings(values: dict, table: dict[str, Check], where: str = "") -> None:
    """Raise one ConfigError for the first value in `values` outside its range in `table`
    (names the table does not list are not checked here)."""
    for name, value in values.items():
        check = table.get(name)
        if check is not None and not check.valid(value):
            hint = ""
            if isinstance(check, OneOf) and isinstance(value, str):
                close = difflib.get_close_matches(value, check.choices, n=1, cutoff=0.5)
                hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"invalid {name}={_show(value)}{' for ' + where if where else ''}{hint} "
                              f"(must be {check.describe()})")


def _show(value: Any) -> str:
    value = list(value) if isinstance(value, tuple) else value
    text = repr(value) if isinstance(value, str) else str(value).replace("True", "true").replace("False", "false")
    text = "null" if value is None else text
    return text if len(text) <= 60 else text[:57] + "..."
