"""Built-in tools. See :mod:`mcode.tools.base` for the interface."""
