"""The agent team: a planner, producers in their own git worktrees, verifiers, merges.

``mcode exec --team 'request'`` (and, later, ``/team`` in the TUI and ``mcode.teamTask`` in
the editor) runs :class:`~mcode.team.run.Team` as the Session's work. The parts, one idea a
module: ``plan.py`` (the plan and the ``plan`` tool), ``verdict.py`` (the ``verdict`` tool and
when a PASS is believed), ``checks.py`` (acceptance checks mcode runs itself), ``git.py``
(worktrees, commits, merges), ``gate.py`` (rate limit and budgets around every model call),
``prompts.py`` (what each role is told), ``board.py`` (where each task stands; a re-plan laid
over it), ``confine.py`` (a producer's tools stay in its worktree), ``state.py`` (a run rebuilt
from its events for ``--resume``), ``run.py`` (the scheduler), ``setup.py`` (from exec's flags
and the config to a Team).
Importing this package imports none of them.
"""
