"""The runtime: a Session owns one conversation and is the only way front ends drive the agent."""

from mcode.runtime.session import Session, TurnOutcome

__all__ = ["Session", "TurnOutcome"]
