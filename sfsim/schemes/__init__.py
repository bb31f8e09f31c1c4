"""Training schemes: what runs where, what crosses the links, what sits in memory."""

from sfsim.schemes import split as _split  # noqa: F401  (registers memsfl, sfl_v2)
from sfsim.schemes.base import Scheme, register_scheme, scheme_class, schemes

__all__ = ["Scheme", "register_scheme", "scheme_class", "schemes"]
