"""The version of vaekit (a leaf module: the package, the run directories and the CLI read it)."""

__version__ = "0.1.0"
