"""Data: leaf types (``types``, ``examples``), built-in datasets (``builtin``), users' files
(``files``), and the one split and the transforms a run remembers (``prepare``).

The data layer imports only vaekit's leaf types (errors, config, batch), never the models,
training or the command line.
"""

from .examples import ByteImages, Examples, as_examples

__all__ = ["ByteImages", "Examples", "as_examples"]
