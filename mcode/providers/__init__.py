"""Model providers: one interface (``Provider.stream``), several wire formats.

``make_provider`` is the only place that maps a resolved config to an implementation, and it
imports each implementation lazily so ``mcode exec`` against a remote API never loads llama.cpp.
``presets`` and ``network`` are the ground floor: the data the configuration reads, importing
nothing from the rest of mcode.
"""
