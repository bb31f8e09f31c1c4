"""Training schemes: what runs where, what crosses the links, what sits in memory."""

# Importing the modules registers their schemes.
from sfsim.schemes import fedlora as _fedlora  # noqa: F401  (fedlora)
from sfsim.schemes import fedmobillm as _fedmobillm  # noqa: F401  (fedmobillm)
from sfsim.schemes import sfl_v1 as _sfl_v1  # noqa: F401  (sfl_v1)
from sfsim.schemes import split as _split  # noqa: F401  (memsfl, sfl_v2, splitlora)
from sfsim.schemes import splitfrozen as _splitfrozen  # noqa: F401  (splitfrozen)
from sfsim.schemes.base import Scheme, register_scheme, scheme_class, schemes

__all__ = ["Scheme", "register_scheme", "scheme_class", "schemes"]
