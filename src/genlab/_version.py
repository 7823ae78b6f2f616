"""The package version (kept equal to pyproject.toml's)."""

__version__ = "0.1.0"

#: the run-directory format (config.json's "format"); a newer genlab that changes what a run's files mean
#: raises it, and this genlab refuses runs of a format above its own rather than misread them
RUN_FORMAT = 1
