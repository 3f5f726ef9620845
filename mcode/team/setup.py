"""From ``mcode exec --team`` to a ready :class:`~mcode.team.run.Team`: options, roles, git.

``mcode exec --team 'request'`` starts a team run; ``mcode exec --resume ID`` continues one
whose events show it unfinished (with or without ``--team``), from its stored plan.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mcode.config import Settings, config_home, data_home
from mcode.errors import MCodeError, UsageError
from mcode.providers.base import Provider
from mcode.roles import Role, load_roles, role_dirs
from mcode.runtime.session import Session
from mcode.store import Store
from mcode.team.gate import Limits
from mcode.team.git import Git, GitError
from mcode.team.run import Team, TeamOptions, TeamResult
from mcode.team.state import TeamRecord, team_record

__all__ = ["TeamJob", "team_job"]

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


async def team_job(
    args: argparse.Namespace,
    settings: Settings,
    session: Session,
    store: Store,
    prompt: str | None,
) -> TeamJob | None:
    """The team run this exec is for, or None (not a team run)."""
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
    team = settings.team  # the flags, else [team] in the config, else the defaults
    options = TeamOptions(
        parallel=team.parallel,
        rounds=team.rounds,
        per_minute=team.rate_limit,
        team_limits=Limits.parse(team.budget, "--team-budget"),
        task_limits=Limits.parse(team.task_budget, "--task-budget"),
        roles=roles,
        worktrees=data_home() / "worktrees",
    )
    job = TeamJob(Team(session, git, options, providers=providers), request, record)
    if record is not None:
        job.steer = prompt
    return job


def _role_providers(settings: Settings, roles: dict[str, Role]) -> dict[str, Provider]:
    """A provider per role that names another model than the session's."""
    from mcode.providers.factory import make_provider

    made: dict[str, Provider] = {}
    for name, role in roles.items():
        model = role.model
        if model and model != settings.model:
            made[name] = make_provider(dataclasses.replace(settings, model=model))
    return made
