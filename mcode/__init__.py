"""mcode: a coding agent for the terminal, editors and CI.

Kept deliberately light: importing ``mcode`` must not pull httpx, pydantic, torch or triton, so
that ``mcode --version`` is instant and ``mcode.kernels`` imports on a machine with only torch and
triton installed.
"""

__version__ = "0.1.0"
