"""User-facing errors: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

import difflib
from typing import Iterable


class GenlabError(Exception):
    """A mistake in what the user asked for or gave us (not a bug in genlab)."""


class DataError(GenlabError, ValueError):
    """Data that cannot be used as given: missing, corrupt, wrong shape, non-finite."""


class ConfigError(GenlabError, ValueError):
    """An unknown name or an invalid hyperparameter / option."""


class GenlabWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints
    `genlab: warning: ...` on one line)."""


class TrainingDiverged(GenlabError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """`unknown model 'vea'; did you mean 'vae'? (choose from: ae, pca, vae)`"""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    shown = f"'{name}'" if str(name).isprintable() else repr(str(name))  # one line, whatever was typed
    return ConfigError(f"unknown {kind} {shown}{hint} (choose from: {', '.join(choices)})")
