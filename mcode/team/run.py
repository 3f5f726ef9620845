"""A team run: plan, then producers and verifiers on ready tasks, then merges, to the end.

    request --planner--> plan (team.plan) --gate--> --scheduler--> ready tasks, `parallel` at once
        the gate:  where the front end can answer (ask_plan), team.plan.asked waits for approve,
                   reject (the run ends, nothing started) or an edit (checked like the
                   planner's plan; a valid one is the plan, team.plan reason edit)
        per task:  worktree + branch (team.worktree; refused unless the tools stay inside it)
                   producer turn (team.task.started) -> commit -> verifier turn + acceptance
                   checks (team.verdict) -> FAIL: findings back to the producer, up to `rounds`
                   PASS accepted -> merge into the user's branch (team.merge) -> team.task.finished
                   a conflict -> a resolver in its own worktree (team.resolve.started), mcode's
                   checks of its result (resolve.py) -> a clean merge, or the conflict
                   reported (team.resolve.finished)
        a steer:   receipt (team.steer) -> the running agents get it at their next step, and the
                   planner re-plans what has not started (team.plan + team.replan); nothing is
                   started while it does. With the gate, the re-plan is asked about first
                   (team.plan.asked with the steer; running tasks go on): a rejection keeps
                   the plan in force
    team.finished: every task's status and rounds

Every member is a Conversation of the Session (``Session.add``; its events carry its agent id),
driven with ``Session.submit(text, agent=...)``. A task becomes ready once every task it
depends on is merged, so its worktree starts from their work and merges happen in dependency
order. Model calls go through each member's :class:`~mcode.team.gate.GatedProvider` (the shared
rate limit, the task's and the team's budgets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from mcode import events as ev
from mcode.agent.conversation import Conversation, TurnOutcome
from mcode.errors import MCodeError
from mcode.prompts import BASE_PROMPT
from mcode.providers.base import Provider
from mcode.roles import Role
from mcode.runtime.session import Session
from mcode.team import prompts
from mcode.team.board import Status, TaskState, final_status, revise
from mcode.team.checks import run_checks
from mcode.team.confine import confinement
from mcode.team.gate import Budget, BudgetHit, GatedProvider, Limits, RateLimiter
from mcode.team.git import Git, MergeResult, task_place
from mcode.team.plan import PLAN_SCHEMA, Plan, PlanError, PlanTool, parse_plan
from mcode.team.resolve import settle
from mcode.team.state import TeamRecord
from mcode.team.verdict import RecordingBash, VerdictTool, judge, read_only
from mcode.tools.base import Tool
from mcode.tools.workspace import Workspace

__all__ = ["Team", "TeamOptions", "TeamResult"]

# Model calls one planner turn may make (a malformed plan is answered and asked again within
# it), and planner turns before the run gives up on getting a plan.
PLANNER_TURN_CALLS = 8
PLANNER_ATTEMPTS = 3
# Model calls per producer or verifier turn, a backstop under the budgets.
MEMBER_TURN_CALLS = 50
READ_TOOLS = ("read", "grep", "glob", "ls")
PRODUCER_TOOLS = ("read", "write", "edit", "grep", "glob", "ls", "bash", "todo")


@dataclass(frozen=True, slots=True)
class TeamOptions:
    parallel: int = 2
    rounds: int = 3
    per_minute: int = 200
    team_limits: Limits = field(default_factory=Limits)
    task_limits: Limits = field(default_factory=Limits)
    roles: dict[str, Role] = field(default_factory=dict)
    # Where the producers' worktrees go (one folder per task under it).
    worktrees: Path = Path(".")
    # Resolver attempts per merge conflict; 0 reports a conflict at once.
    resolve_attempts: int = 1
    # Whether the front end answers the plan gate (else the plan is carried out at once).
    ask_plan: bool = False


@dataclass(frozen=True, slots=True)
class TeamResult:
    tasks: tuple[ev.TaskSummary, ...]
    reason: str  # completed, failed, budget, cancelled, no_plan, rejected
    why: str = ""  # rejected: the user's reason (or what stood in for one: a timeout)

    @property
    def ok(self) -> bool:
        return self.reason == "completed"


class Team:
    def __init__(
        self,
        session: Session,
        git: Git,
        options: TeamOptions,
        *,
        providers: dict[str, Provider] | None = None,
    ) -> None:
        self.session = session
        self.git = git
        self.options = options
        # A role's own model, by role name (made by the caller from the role's `model`).
        self.providers = providers or {}
        self.limiter = RateLimiter(options.per_minute)
        self.budget = Budget(options.team_limits, None, self._budget_hit)
        self.tasks: dict[str, TaskState] = {}
        self.plan: Plan | None = None
        self.revision = 0
        self.generation = 1
        self.stopping: str | None = None  # cancelled, budget
        self._wake = asyncio.Event()
        self._replanning: asyncio.Task[None] | None = None
        self._replans: list[str] = []
        self._planner: Conversation | None = None
        self._planner_tool = PlanTool()
        self._base_branch = ""
        self._request = ""
        self._early: list[str] = []  # steers that came before the planner's first turn ran
        self._gating = False  # the plan gate waits for its answer (the first plan's)
        self._halt = asyncio.Event()  # set when stopping is: the gate stops waiting
        self._proposed: Plan | None = None  # a re-plan the gate asks about, not yet in force
        self._in_force = 0  # the revision of the plan in force
        self._asks = 0  # plan gate questions so far (their request ids count them)

    @property
    def asked_plan(self) -> Plan | None:
        """The plan the gate asks about now: a re-plan not yet in force, else the plan."""
        return self._proposed or self.plan

    # -- the verbs the session forwards --------------------------------------------------------
    def steer(self, text: str) -> None:
        """A requirement added mid-run: to the running agents (at their next step) and to the
        planner, which re-plans what has not started. The receipt says where it went."""
        to: list[str] = []
        running = [c for t in self.tasks.values() for c in t.agents]
        if self.plan is None and self._planner is not None:
            running.insert(0, self._planner)  # still making the first plan: it hears it now
        for conv in running:
            if self.session.host(conv).running:
                self.session.emit(ev.SteerReceived(text=text), of=conv)
                conv.add_steer(text)
                to.append(conv.agent_id or "")
        if self.plan is None and not to and self.stopping is None:
            self._early.append(text)  # before the planner's turn: it comes with the request
            to.append(self._planner_id)
        replan = self.plan is not None and self.stopping is None
        if replan:
            to.insert(0, self._planner_id)
        self.session.emit(ev.TeamSteer(text=text, to=tuple(to), replan=replan))
        if replan:
            self._replans.append(text)
            # At the plan gate it waits for the answer: an edit would replace the plan under
            # the re-plan, and a rejection makes it moot.
            if not self._gating:
                self._start_replans()

    def _start_replans(self) -> None:
        if self._replans and (self._replanning is None or self._replanning.done()):
            self._replanning = asyncio.ensure_future(self._replan_all())
        self._wake.set()

    def cancel(self) -> None:
        """Stop: the session cancels the running turns; nothing new starts."""
        self.stopping = self.stopping or "cancelled"
        self._halt.set()
        self._wake.set()

    # -- the run ------------------------------------------------------------------------------
    async def run(
        self, request: str, record: TeamRecord | None = None, *, steer: str | None = None
    ) -> TeamResult:
        """Run to the end. ``record``: the stored run this one resumes; ``steer``: a new
        requirement given with the resume (the prompt of ``mcode exec --resume ID '...'``)."""
        self._request = request
        self._base_branch = await self.git.branch()
        if record is not None:
            self.generation = record.generation + 1
            await self.git.abort_merge()  # a killed merge never stays half-done
        self.session.emit(
            ev.TeamStarted(
                task=request,
                parallel=self.options.parallel,
                rounds=self.options.rounds,
                base_branch=self._base_branch,
                base_commit=await self.git.head(),
                resumed=record is not None,
            )
        )
        # A plan made now is asked about; so is a stored one the killed run was asking about.
        # Re-plans wait for the answer (see steer).
        self._gating = self.options.ask_plan and (
            record is None or record.plan is None or record.plan_asked
        )
        try:
            if record is not None and record.plan is not None:
                self._adopt(record)
                # Re-plans the killed run owed: made before anything starts.
                self._replans.extend(record.steers)
                if steer:
                    self.steer(steer)
            else:
                plan = await self._first_plan(request)
                if plan is None:
                    return self._finish("no_plan" if self.stopping is None else self.stopping)
            if self._gating:
                try:
                    rejected, edited = await self._plan_gate()
                finally:
                    self._gating = False
                if rejected is not None:
                    return self._finish(self.stopping or "rejected", rejected)
                if edited is not None:
                    self.plan, self.revision = edited, self.revision + 1
                    self._in_force = self.revision
                    self.tasks = {i: TaskState(spec) for i, spec in edited.tasks.items()}
                    self.session.emit(
                        ev.TeamPlan(
                            revision=self.revision, reason="edit", stages=edited.stage_dicts()
                        )
                    )
            self._start_replans()
            await self._schedule()
        finally:
            for provider in self.providers.values():
                await provider.aclose()
        return self._finish(self._reason())

    def _reason(self) -> str:
        if self.stopping is not None:
            return self.stopping
        if any(t.status != "passed" for t in self.tasks.values()):
            return "failed"
        return "completed"

    def _finish(self, reason: str, why: str = "") -> TeamResult:
        for task in self.tasks.values():
            if task.status in ("pending", "running"):
                task.status, task.reason = "cancelled", f"the run stopped ({reason})"
                self._task_finished(task)
        summary = tuple(
            ev.TaskSummary(id=t.spec.id, status=final_status(t.status), rounds=t.rounds)
            for t in (self.tasks[i] for i in self._order())
        )
        self.session.emit(ev.TeamFinished(tasks=summary, reason=reason))
        return TeamResult(summary, reason, why)

    def _order(self) -> list[str]:
        order = self.plan.order() if self.plan is not None else []
        return order + [i for i in self.tasks if i not in order]

    def _adopt(self, record: TeamRecord) -> None:
        assert record.plan is not None
        self.plan, self.revision = record.plan, record.revision
        self._in_force = record.in_force
        for task_id, spec in record.plan.tasks.items():
            task = TaskState(spec, rounds=record.rounds.get(task_id, 0))
            if task_id in record.merged:
                task.status, task.merged, task.reason = "passed", True, "accepted before resume"
            elif task_id in record.accepted:
                task.accepted_branch = True
            self.tasks[task_id] = task

    # -- planning -----------------------------------------------------------------------------
    @property
    def _planner_id(self) -> str:
        return self._agent_id("planner")

    def _agent_id(self, name: str) -> str:
        # A resumed run's members are new conversations: their ids say which run they are of.
        return name if self.generation == 1 else f"{name}@{self.generation}"

    def _planner_conv(self) -> Conversation:
        if self._planner is None:
            main = self.session.main
            tools = [t for t in main.tools if t.name in READ_TOOLS] + [self._planner_tool]
            self._planner = self._member(
                self._planner_id, "planner", prompts.PLANNER, tools, [self.budget], None
            )
            self._planner.max_turns = PLANNER_TURN_CALLS
        return self._planner

    async def _ask_planner(self, text: str) -> Plan | None:
        planner = self._planner_conv()
        self._planner_tool.plan = None
        for _ in range(PLANNER_ATTEMPTS):
            outcome = await self.session.submit(text, agent=planner.agent_id)
            if self._planner_tool.plan is not None:
                return self._planner_tool.plan
            if outcome.reason != "completed" or self.stopping is not None:
                return None
            text = "You did not call the plan tool. Call it now with the plan."
        return None

    async def _first_plan(self, request: str) -> Plan | None:
        text = prompts.planner_request(request)
        if self._early:
            text += "\n\nThe user added:\n" + "\n".join(f"- {s}" for s in self._early)
        plan = await self._ask_planner(text)
        if plan is None:
            return None
        self.plan, self.revision = plan, 1
        self._in_force = 1
        self.tasks = {task_id: TaskState(spec) for task_id, spec in plan.tasks.items()}
        self.session.emit(ev.TeamPlan(revision=1, reason="initial", stages=plan.stage_dicts()))
        return plan

    # -- the plan gate -------------------------------------------------------------------------
    async def _plan_gate(self, steer: str | None = None) -> tuple[str | None, Plan | None]:
        """Ask the front end about the plan just shown (``steer``: a re-plan for it, asked
        while the running tasks go on); (None, None): carry it out, (None, plan): the user's
        edit, else (why it was rejected, None). Answered as a permission question is (the same
        ``approve``, timeout and end of input), except that no answer rejects: a plan nobody
        looked at does not get to change the repository. An edit is checked as the planner's
        plan is; an invalid one is said as an ``input`` error and the gate asks again."""
        while True:
            self._asks += 1
            request_id = f"plan-{self.generation}.{self._asks}"
            if not self.session.interactive:  # the input ended: nobody can answer any more
                why = "the input ended before the plan was answered"
                return self._plan_decided(request_id, False, "headless", why, steer), None
            future = self.session.expect_approval(request_id, edits=True)
            self.session.emit(
                ev.TeamPlanAsked(
                    request_id=request_id,
                    revision=self.revision,
                    timeout=self.session.approval_timeout,
                    steer=steer,
                )
            )
            # Its own wait: the scheduler's _wake goes on waking it for the running tasks.
            while not future.done() and self.stopping is None:
                self._halt.clear()
                stop = asyncio.ensure_future(self._halt.wait())
                waiting: set[asyncio.Future[Any]] = {future, stop}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
            if not future.done():  # cancelled (or the team budget) while it waited
                future.cancel()
                why = "the run was stopped"
                return self._plan_decided(request_id, False, "cancel", why, steer), None
            answer = future.result()
            if answer.edit is None:
                why = answer.reason or ("approved" if answer.allowed else "no reason given")
                by = cast(ev.PlanDecidedBy, answer.by)  # user, timeout or headless here
                return self._plan_decided(request_id, answer.allowed, by, why, steer), None
            try:
                edited = parse_plan(answer.edit)
            except PlanError as e:
                self.session.report_error(
                    "input",
                    f"the edited plan ({request_id}) was not accepted: "
                    + e.message.removeprefix("the plan was not accepted: "),
                    "answer the next team.plan.asked with a corrected plan (the schema: "
                    + json.dumps(PLAN_SCHEMA, separators=(",", ":"))
                    + "), or allow or deny the plan as it is",
                )
                continue
            self._plan_decided(request_id, True, "user", answer.reason, steer, edited=True)
            return None, edited

    def _plan_decided(
        self,
        request_id: str,
        allowed: bool,
        by: ev.PlanDecidedBy,
        why: str,
        steer: str | None,
        *,
        edited: bool = False,
    ) -> str | None:
        decision: ev.PlanDecision = "edited" if edited else "approved" if allowed else "rejected"
        if steer is not None and not allowed:  # the user sees which plan now holds
            why += f"; the plan stays as it was (revision {self._in_force})"
        self.session.emit(
            ev.TeamPlanDecided(
                request_id=request_id, decision=decision, by=by, reason=why, steer=steer
            )
        )
        return None if allowed else why

    async def _replan_all(self) -> None:
        try:
            while self._replans and self.stopping is None:
                await self._replan(self._replans.pop(0))
        finally:
            self._wake.set()

    async def _replan(self, steer: str) -> None:
        """Ask the planner for the plan with ``steer`` in it and lay it over the board. With the
        plan gate on, the revised plan is shown and asked about first, as the first plan was:
        the running tasks go on, none starts; a rejection keeps the plan in force."""
        assert self.plan is not None
        status = {i: t.status for i, t in self.tasks.items()}
        new = await self._ask_planner(
            prompts.replan_request(steer, self.plan, status, self._request)
        )
        if new is None:
            self.session.report_error(
                "steer",
                f"the planner gave no revised plan for {steer!r}; the plan stays as it was",
                "the running agents still got it; send it again to re-plan",
            )
            return
        shown: tuple[ev.PlanStage, ...] | None = None  # the stages the gate showed
        reason: ev.PlanReason = "steer"
        if self.options.ask_plan and self.stopping is None:
            # Shown as it would be laid over the board now (on copies: nothing changes yet).
            preview = revise({i: replace(t) for i, t in self.tasks.items()}, new, steer)
            self.revision += 1
            shown = preview.plan.stage_dicts()
            self.session.emit(ev.TeamPlan(revision=self.revision, reason="steer", stages=shown))
            self._proposed = preview.plan
            try:
                rejected, edited = await self._plan_gate(steer)
            finally:
                self._proposed = None
            if rejected is not None:
                return
            if edited is not None:
                new, shown, reason = edited, None, "edit"
                self.revision += 1
        else:
            self.revision += 1
        # Laid over the board as it is now: tasks ran on while the gate waited.
        change = revise(self.tasks, new, steer)
        for task_id in change.removed:
            self._task_finished(self.tasks[task_id])
        self.plan = change.plan
        self._in_force = self.revision
        stages = self.plan.stage_dicts()
        if stages != shown:
            self.session.emit(ev.TeamPlan(revision=self.revision, reason=reason, stages=stages))
        self.session.emit(
            ev.TeamReplan(
                revision=self.revision,
                steer=steer,
                added=change.added,
                changed=change.changed,
                removed=change.removed,
                reopened=change.reopened,
                kept=change.kept,
            )
        )

    # -- scheduling ---------------------------------------------------------------------------
    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            self._settle_blocked()
            replanning = self._replanning is not None and not self._replanning.done()
            if self.stopping is None and not replanning:
                for task in self._ready():
                    task.status = "running"
                    task.runner = asyncio.ensure_future(self._run_task(task))
                    task.runner.add_done_callback(lambda _: self._wake.set())
            running = [t.runner for t in self.tasks.values() if t.runner and not t.runner.done()]
            if not running and not replanning:
                return
            await self._wake.wait()

    def _ready(self) -> list[TaskState]:
        busy = sum(1 for t in self.tasks.values() if t.status == "running")
        room = self.options.parallel - busy
        ready = []
        for task_id in self._order():
            task = self.tasks[task_id]
            if room <= 0:
                break
            deps = [self.tasks[d] for d in task.spec.depends_on if d in self.tasks]
            if task.status == "pending" and all(d.merged for d in deps):
                ready.append(task)
                room -= 1
        return ready

    def _settle_blocked(self) -> None:
        """A pending task whose dependency ended without being merged can never run."""
        changed = True
        while changed:
            changed = False
            for task in self.tasks.values():
                if task.status != "pending":
                    continue
                for dep in task.spec.depends_on:
                    other = self.tasks.get(dep)
                    if other is not None and other.status in ("failed", "partial", "cancelled"):
                        task.status = "cancelled"
                        task.reason = f"it depends on {dep}, which {other.status}"
                        self._task_finished(task)
                        changed = True
                        break

    # -- one task -----------------------------------------------------------------------------
    async def _run_task(self, task: TaskState) -> None:
        spec = task.spec
        path, branch = task_place(self.options.worktrees, self.session.id, spec.id)
        if task.accepted_branch:
            task.accepted_branch = False
            if await self._merge(task, branch, path):
                return
        task.budget = Budget(self.options.task_limits, spec.id, self._budget_hit)
        try:
            await self.git.add_worktree(path, branch, await self.git.head())
            workspace = self._workspace(path)
            task.runs += 1
            name = f"producer:{spec.id}" + (f".{task.runs}" if task.runs > 1 else "")
            producer = self._member(
                self._agent_id(name),
                "producer",
                prompts.PRODUCER,
                [t for t in self.session.main.tools if t.name in PRODUCER_TOOLS],
                [task.budget, self.budget],
                workspace,
            )
            problem = confinement(producer, path, self.git.root)
            self.session.emit(
                ev.TeamWorktree(
                    task_id=spec.id,
                    path=str(path),
                    branch=branch,
                    confined=not problem,
                    reason=problem,
                )
            )
            if problem:
                self._end(task, "failed", f"refused: {problem}")
                return
            message = prompts.producer_request(spec, self._plan(), reopened_by=task.reopened_by)
            while True:
                if self.stopping is not None:
                    self._end(task, "cancelled", f"the run stopped ({self.stopping})")
                    return
                self.session.emit(
                    ev.TeamTaskStarted(
                        task_id=spec.id,
                        round=task.rounds + 1,
                        agent=producer.agent_id or "",
                        branch=branch,
                        worktree=str(path),
                    )
                )
                outcome = await self._turn(task, producer, message)
                if outcome.reason != "completed":
                    self._stopped(task, outcome, "the producer")
                    return
                await self.git.commit_all(
                    path, f"{spec.id}: {spec.title} (round {task.rounds + 1})"
                )
                task.rounds += 1
                if self.stopping is not None:  # a cancel while the work was committed
                    self._end(task, "cancelled", f"the run stopped ({self.stopping})")
                    return
                findings = await self._verify(task, workspace, outcome.text)
                if findings is None:
                    await self._merge(task, branch, path)
                    return
                if self.stopping is not None or task.budget.hit is not None:
                    self._end(task, "cancelled", f"the run stopped ({self.stopping or 'budget'})")
                    return
                if task.rounds >= self.options.rounds:
                    last: Status = "partial" if task.partial else "failed"
                    self._end(
                        task, last, f"not accepted after {task.rounds} round(s): {findings[0]}"
                    )
                    return
                message = prompts.revision_request(findings)
        except asyncio.CancelledError:
            self._end(task, "cancelled", "cancelled")
            raise
        except MCodeError as e:  # git failed under it (a full disk, a locked ref)
            kind = cast(ev.ErrorKind, type(e).__name__)  # every error class is a kind
            self.session.report_error(kind, e.message, e.hint or "see git status")
            self._end(task, "failed", e.message)
        finally:
            if task.status == "cancelled" and path.exists():
                # A cancelled task leaves no worktree behind (what it committed stays on its
                # branch); a failed one keeps it, for the user to look at.
                with contextlib.suppress(MCodeError):
                    await asyncio.shield(self.git.remove_worktree(path))

    async def _turn(self, task: TaskState, conv: Conversation, text: str) -> TurnOutcome:
        task.agents.append(conv)
        try:
            return await self.session.submit(text, agent=conv.agent_id)
        finally:
            task.agents.remove(conv)

    def _stopped(self, task: TaskState, outcome: TurnOutcome, who: str) -> None:
        if isinstance(outcome.error, BudgetHit):
            status: Status = "failed" if outcome.error.budget is task.budget else "cancelled"
            self._end(task, status, outcome.error.message)
        elif outcome.reason == "cancelled" or self.stopping is not None:
            self._end(task, "cancelled", f"the run stopped ({self.stopping or 'cancelled'})")
        else:
            why = outcome.error.message if outcome.error else outcome.reason
            self._end(task, "failed", f"{who}'s turn ended ({outcome.reason}): {why}")

    async def _verify(self, task: TaskState, workspace: Workspace, answer: str) -> list[str] | None:
        """One verification: a fresh verifier, then mcode's own checks. None: accepted; else
        the findings the producer gets."""
        spec = task.spec
        assert task.budget is not None
        bash, verdict_tool = RecordingBash(), VerdictTool()
        tools = [t for t in self.session.main.tools if t.name in READ_TOOLS]
        verifier = self._member(
            self._agent_id(f"verifier:{spec.id}:{task.rounds}"),
            "verifier",
            prompts.VERIFIER,
            [*tools, bash, verdict_tool],
            [task.budget, self.budget],
            workspace,
        )
        # The checks run with the producer's sandbox (its worktree writable); the verifier's
        # own commands read-only: it judges the work, it must not change what it judges.
        context = verifier.tool_context
        producing = context.sandbox
        context.sandbox = read_only(producing)
        outcome = await self._turn(task, verifier, prompts.verifier_request(spec, answer))
        checks = await run_checks(spec.checks, workspace.root, context.env, producing)
        verdict = verdict_tool.verdict
        passed = all(c["passed"] for c in checks)
        refused = judge(verdict, bash.runs, passed)
        if verdict is None and outcome.reason != "completed":
            refused = f"the verifier's turn ended ({outcome.reason}) without a verdict"
        accepted = verdict is not None and verdict.verdict == "PASS" and not refused
        self.session.emit(
            ev.TeamVerdict(
                task_id=spec.id,
                round=task.rounds,
                agent=verifier.agent_id or "",
                verdict=None if verdict is None else verdict.verdict,  # type: ignore[arg-type]
                evidence=() if verdict is None else verdict.evidence,
                findings=() if verdict is None else verdict.findings,
                checks=tuple(checks),
                accepted=accepted,
                refused=refused if verdict is not None and verdict.verdict == "PASS" else "",
            )
        )
        if accepted:
            return None  # merged next, and the worktree goes: nothing to put back
        await self.git.reset(workspace.root)  # what the verifier left is not the producer's
        task.partial = verdict is not None and verdict.verdict == "PARTIAL"
        findings = list(verdict.findings) if verdict is not None else []
        if refused:
            findings.insert(0, f"mcode refused the verdict: {refused}")
        findings += [
            f"acceptance check `{c['command']}` failed: {c['why']}"
            for c in checks
            if not c["passed"]
        ]
        return findings or ["the verifier did not accept the work"]

    async def _merge(self, task: TaskState, branch: str, path: Path) -> bool:
        spec = task.spec
        result = await self.git.merge(branch, f"mcode team: {spec.id}: {spec.title}")
        self._merge_event(spec.id, branch, result)
        resolved, why = False, ""
        if not result.ok and result.conflicts:  # a resolver may try, a bounded number of times
            for attempt in range(1, self.options.resolve_attempts + 1):
                why = await self._resolve(task, branch, attempt)
                resolved = not why
                if resolved or self.stopping is not None:
                    break
        if result.ok or resolved:
            task.merged = True
            await self.git.remove_worktree(path, branch)
            how = "the merge conflict resolved, checked and merged" if resolved else "merged"
            self._end(task, "passed", f"verified and {how}")
            return True
        await self.git.remove_worktree(path)  # the branch stays, for the user
        reason = f"merge conflict, branch {branch} left as it is"
        # Stopped while a resolver worked: accepted, not merged, so a resume merges it again.
        status: Status = "cancelled" if why and self.stopping is not None else "failed"
        self._end(task, status, reason + (f" (resolver: {why})" if why else ""))
        return False

    def _merge_event(self, task_id: str, branch: str, result: MergeResult) -> None:
        self.session.emit(
            ev.TeamMerge(
                task_id=task_id,
                branch=branch,
                ok=result.ok,
                commit=result.commit,
                conflicts=result.conflicts,
                message=result.message,
            )
        )

    async def _resolve(self, task: TaskState, branch: str, attempt: int) -> str:
        """One resolver attempt for ``task``'s conflicting ``branch`` (resolve.py draws it):
        "" when its resolution was checked and merged into the user's branch, else why not.
        Its worktree and branch go either way; the task's branch is not touched."""
        spec = task.spec
        path, own = task_place(self.options.worktrees, self.session.id, spec.id, resolver=True)
        agent = self._agent_id(f"resolver:{spec.id}" + (f".{attempt}" if attempt > 1 else ""))
        if task.budget is None:  # accepted by a killed run, merged on resume
            task.budget = Budget(self.options.task_limits, spec.id, self._budget_hit)
        target = await self.git.head()
        if not await self.git.start_resolution(path, own, branch, target):
            await self.git.remove_worktree(path, own)
            return "git could not start the merge in the resolver's worktree"
        why: str | None = None  # until it is known: an interruption says so
        runs: list[ev.CheckRun] = []
        try:
            conflicts = tuple(await self.git.unmerged(path))
            self.session.emit(
                ev.TeamResolveStarted(
                    task_id=spec.id,
                    agent=agent,
                    branch=own,
                    worktree=str(path),
                    conflicts=conflicts,
                )
            )
            resolver = self._member(
                agent,
                "resolver",
                prompts.RESOLVER,
                [t for t in self.session.main.tools if t.name in PRODUCER_TOOLS],
                [task.budget, self.budget],
                self._workspace(path),
            )
            problem = confinement(resolver, path, self.git.root)
            if problem:
                why = f"refused: {problem}"
                return why
            merged = [t.spec for t in self.tasks.values() if t.merged and t is not task]
            request = prompts.resolver_request(spec, list(conflicts), merged)
            outcome = await self._turn(task, resolver, request)
            if outcome.reason != "completed":
                detail = outcome.error.message if outcome.error else outcome.reason
                why = f"the resolver's turn ended ({outcome.reason}): {detail}"
                return why
            context = resolver.tool_context
            checks = spec.checks + tuple(c for t in merged for c in t.checks)
            why, runs = await settle(
                self.git,
                path,
                own,
                target,
                conflicts,
                checks,
                context.env,
                context.sandbox,
                f"{spec.id}: resolve the conflict with {self._base_branch}",
            )
            if not why:
                result = await self.git.merge(
                    own, f"mcode team: {spec.id}: {spec.title} (conflict resolved)"
                )
                self._merge_event(spec.id, own, result)
                if not result.ok:
                    why = f"the resolution did not merge cleanly: {result.message}"
            return why
        except MCodeError as e:  # git under it failed (a commit, a locked ref)
            why = e.message
            return why
        finally:
            if why is None:
                why = f"it was stopped ({self.stopping or 'cancelled'})"
            self.session.emit(
                ev.TeamResolveFinished(
                    task_id=spec.id,
                    agent=agent,
                    outcome="failed" if why else "resolved",
                    reason=why,
                    checks=tuple(runs),
                )
            )
            with contextlib.suppress(MCodeError):
                await asyncio.shield(self.git.remove_worktree(path, own))

    def _end(self, task: TaskState, status: Status, reason: str) -> None:
        task.status, task.reason = status, reason
        self._task_finished(task)
        if status == "passed" and task.reopen_after is not None:
            task.status, task.merged, task.reason = "pending", False, ""
            task.reopened_by, task.reopen_after = task.reopen_after, None
        self._wake.set()

    def _task_finished(self, task: TaskState) -> None:
        self.session.emit(
            ev.TeamTaskFinished(
                task_id=task.spec.id,
                status=final_status(task.status),
                rounds=task.rounds,
                reason=task.reason,
            )
        )

    def _plan(self) -> Plan:
        assert self.plan is not None
        return self.plan

    # -- members ------------------------------------------------------------------------------
    def _workspace(self, path: Path) -> Workspace:
        """The worktree as a workspace, with the user's extra roots and allow_outside: the
        confinement check then sees what the tools really could reach."""
        main_ws = self.session.main.tool_context.workspace
        return Workspace(path, extra_roots=main_ws.extra_roots, allow_outside=main_ws.allow_outside)

    def _member(
        self,
        agent_id: str,
        role_name: str,
        default_prompt: str,
        tools: list[Tool],
        budgets: list[Budget],
        workspace: Workspace | None,
    ) -> Conversation:
        main = self.session.main
        role = self.options.roles.get(role_name)
        system = default_prompt + _project_part(main.system_prompt)
        thinking = None
        if role is not None:
            first = default_prompt.split("\n", 1)[0]
            if role.instructions:
                system = f"{first}\n\n{role.instructions}" + _project_part(main.system_prompt)
            thinking = role.thinking
            if role.tools is not None:
                keep = set(role.tools) | {"plan", "verdict"}
                tools = [t for t in tools if t.name in keep]
        inner = self.providers.get(role_name, main.provider)
        conv = main.child(
            agent_id,
            system_prompt=system,
            tools=tools,
            max_turns=MEMBER_TURN_CALLS,
            shared_totals=True,
            workspace=workspace,
            provider=GatedProvider(inner, self.limiter, budgets),
            thinking=thinking,
        )
        self.session.add(conv)
        return conv

    def _budget_hit(self, hit: BudgetHit) -> None:
        budget = hit.budget
        self.session.emit(
            ev.TeamBudget(
                scope="team" if budget.task_id is None else "task",
                task_id=budget.task_id,
                limit=hit.limit,  # type: ignore[arg-type]
                allowed=hit.allowed,
                used=hit.used,
            )
        )
        if budget.task_id is None:
            self.stopping = self.stopping or "budget"
            self._halt.set()
            self._wake.set()


def _project_part(system_prompt: str) -> str:
    """What the session's system prompt adds to the base prompt: the project's instructions
    (AGENTS.md, when the folder is trusted), which every team member follows too."""
    if system_prompt.startswith(BASE_PROMPT):
        return system_prompt[len(BASE_PROMPT) :]
    return ""
