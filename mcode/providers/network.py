"""Network settings of a remote provider: timeouts and the retry policy, as plain data.

On the providers' ground floor with :mod:`.presets`: it imports nothing from mcode, so the
configuration (``[network]`` keys, ``MCODE_NETWORK_*``) reads and fills it without loading any
provider code. :mod:`.http` enforces the timeouts, :mod:`.retry` the retry policy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NetworkSettings"]


@dataclass(slots=True)
class NetworkSettings:
    """Timeouts (seconds) and retry policy for one provider.

    ``first_event_timeout`` bounds the wait from sending a request to its first SSE event (or, when
    not streaming, to the whole answer together with ``idle_timeout``); ``idle_timeout`` bounds the
    silence between two reads of a streaming answer (long thinking can be silent, hence 300 s).
    ``max_retries`` counts retries, not attempts: 5 means up to 6 requests.
    """

    connect_timeout: float = 10.0
    first_event_timeout: float = 120.0
    idle_timeout: float = 300.0
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
