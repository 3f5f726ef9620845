"""From a front end to a ready :class:`~mcode.team.run.Team`: options, roles, git.

:func:`start_team` is the one way in, for every front end: settings, the Session the team runs
in, the request and the options (:class:`~mcode.config.TeamSettings`: ``[team]`` in the config
unless the caller says otherwise). It checks the repository (a clean branch, not detached) and
gives a :class:`TeamJob` the caller runs as the session's work::

    job = await start_team(settings, session, "make a and b")
    session.start_work(job.team, job.run())   # steers and cancels now reach the team
    ...                                       # (await it, or wait for session.wait_idle())
    outcome = job.outcome()                    # the end as a turn's: reason, text, error

``mcode exec --team 'request'`` (:func:`team_job`) starts a team run this way; ``mcode exec
--resume ID`` continues one whose events show it unfinished (with or without ``--team``), from
its stored plan. ``mcode lsp``'s ``mcode.teamTask`` and ``mcode acp``'s ``/team`` call it too.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mcode import events as ev
from mcode.agent.conversation import TurnOutcome
from mcode.config import Settings, TeamSettings, config_home, data_home
from mcode.errors import MCodeError, UsageError
from mcode.providers.base import Provider
from mcode.roles import Role, load_roles, role_dirs
from mcode.runtime.session import Session
from mcode.store import Store
from mcode.team.gate import Limits
from mcode.team.git import Git, GitError
from mcode.team.run import Team, TeamOptions, TeamResult
from mcode.team.state import TeamRecord, team_record

__all__ = ["TeamJob", "start_team", "team_job"]

ROLE_NAMES = ("planner", "producer", "verifier")


@dataclass(slots=True)
class TeamJob:
    team: Team
    request: str
    record: TeamRecord | None
    result: TeamResult | None = None
    # What ended the run before it could finish (git failing at the start), else None.
    error: MCodeError | None = None
    # A prompt given with --resume of an unfinished team run: a new requirement (a steer).
    steer: str | None = None

    async def run(self) -> TeamResult | None:
        try:
            self.result = await self.team.run(self.request, self.record, steer=self.steer)
        except MCodeError as e:
            self.error = e
        return self.result

    def outcome(self, last: TurnOutcome | None = None) -> TurnOutcome:
        """The run's end as a turn's: completed (every task passed), max_turns (a budget ran
        out: exit 3), cancelled, else error (a task failed: exit 1). Its text lists the tasks.
        ``last``: the main conversation's last outcome, for a run cancelled before it began."""
        if self.error is not None:
            return TurnOutcome("error", "", self.error)
        result = self.result
        if result is None:  # cancelled before the team said anything
            return last or TurnOutcome("cancelled", "")
        lines = [f"{t['id']}: {t['status']} ({t['rounds']} round(s))" for t in result.tasks]
        text = "\n".join(lines) or "no tasks"
        if result.reason == "rejected":
            return TurnOutcome(
                "error",
                text,
                MCodeError(
                    f"the plan was rejected: {result.why}; no task was started",
                    hint="run the team again, with a request that says what the plan missed",
                ),
            )
        reasons: dict[str, ev.TurnReason] = {
            "completed": "completed",
            "budget": "max_turns",
            "cancelled": "cancelled",
        }
        reason = reasons.get(result.reason, "error")
        error = None
        if reason == "error":
            error = MCodeError(
                f"the team run ended {result.reason}: "
                + (
                    ", ".join(
                        f"{t['id']} {t['status']}" for t in result.tasks if t["status"] != "passed"
                    )
                    or "no plan"
                ),
                hint="see the team.* events (--output-format stream-json) for each task's verdicts",
            )
        return TurnOutcome(reason, text, error)


async def team_job(
    args: argparse.Namespace,
    settings: Settings,
    session: Session,
    store: Store,
    prompt: str | None,
    *,
    ask_plan: bool = False,
) -> TeamJob | None:
    """The team run this exec is for, or None (not a team run). ``ask_plan``: the plan gate
    asks (stream-json in and out), else the plan is carried out at once."""
    record = None
    if args.resume or args.continue_:
        record = team_record(store.events(session.id))
        if record is not None and record.finished:
            if args.team:
                raise UsageError(
                    f"the team run of session {session.id[:12]} finished",
                    hint="start a new one: mcode exec --team 'what to do'",
                )
            record = None  # a session whose team finished resumes as a conversation
    if record is None and not args.team:
        return None
    request = record.request if record is not None else prompt
    if request is None:
        raise UsageError(
            "--team needs the task as the prompt", hint="mcode exec --team 'what to build'"
        )
    job = await start_team(settings, session, request, record=record, ask_plan=ask_plan)
    if record is not None:
        job.steer = prompt
    return job


async def start_team(
    settings: Settings,
    session: Session,
    request: str,
    options: TeamSettings | None = None,
    *,
    record: TeamRecord | None = None,
    ask_plan: bool = False,
) -> TeamJob:
    """A team for ``request`` in ``session``, ready to run (see the module docstring).
    ``options``: parallel, rounds, rate limit, budgets and resolver attempts (None:
    ``settings.team``, the flags else ``[team]`` else the defaults). ``record``: the stored
    state of an unfinished run to continue. ``ask_plan``: the front end answers the plan gate
    (``team.plan.asked``: approve, reject or edit the plan before any task starts); False: the
    plan is carried out at once.
    Raises UsageError, with nothing started, where the workspace cannot take a team:
    not a git repository, uncommitted changes to tracked files, a detached HEAD, a bad budget."""
    if not request.strip():
        raise UsageError("a team needs a request", hint="say what the team should build")
    try:
        git = await Git.open(settings.workspace)
    except GitError as e:  # not a repository: a flag that cannot apply here
        raise UsageError(e.message, hint=e.hint) from None
    changed = await git.tracked_changes()
    if changed:
        raise UsageError(
            f"the working tree has uncommitted changes ({', '.join(changed[:5])}), and the "
            "team merges its work into it",
            hint="commit or stash them first (git stash), then run the team",
        )
    try:
        await git.branch()  # a detached HEAD is refused before any agent starts
    except GitError as e:
        raise UsageError(e.message, hint=e.hint) from None
    roles = {
        name: role
        for name, role in load_roles(
            role_dirs(settings.workspace, config_home(), Path.home(), trusted=settings.trusted)
        ).items()
        if name in ROLE_NAMES
    }
    providers = _role_providers(settings, roles)
    team = options or settings.team
    options_ = TeamOptions(
        parallel=team.parallel,
        rounds=team.rounds,
        per_minute=team.rate_limit,
        team_limits=Limits.parse(team.budget, "--team-budget"),
        task_limits=Limits.parse(team.task_budget, "--task-budget"),
        roles=roles,
        worktrees=data_home() / "worktrees",
        resolve_attempts=team.resolve_attempts,
        ask_plan=ask_plan,
    )
    return TeamJob(Team(session, git, options_, providers=providers), request, record)


def _role_providers(settings: Settings, roles: dict[str, Role]) -> dict[str, Provider]:
    """A provider per role that names another model than the session's."""
    from mcode.config import model_settings
    from mcode.providers.factory import make_provider

    made: dict[str, Provider] = {}
    for name, role in roles.items():
        other = model_settings(settings, role.model) if role.model else None
        if other is not None:
            made[name] = make_provider(other)
    return made
