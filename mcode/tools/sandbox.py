"""The OS sandbox: every process mcode starts for the model runs inside bubblewrap.

    bwrap --ro-bind / /                       the whole machine, read-only
          --dev /dev --proc /proc --bind /tmp /tmp   fresh devices and processes; /tmp shared
          --bind WS WS  (and each --add-dir)     the workspace writable (workspace-write)
          --ro-bind WS/.git/hooks ...            then re-bound read-only on top of it:
          --ro-bind WS/.git/config ...             git hooks and config, mcode's config dir
          --unshare-net --unshare-pid --unshare-ipc   no network (unless allowed), no view of
          --die-with-parent --cap-drop ALL             mcode's processes; dies with mcode
          -- bash -c COMMAND

Three modes, independent of the permission mode (which decides whether a call runs at all;
this decides what a call that runs can touch): ``read-only`` (nothing writable but a private,
empty /tmp), ``workspace-write`` (the default: the workspace, ``--add-dir`` folders and /tmp, as
in Codex) and
``danger-full-access`` (no sandbox; the user's explicit choice). ``[sandbox] network = true``
lets commands reach the network.

The policy comes from the user's settings only: nothing in a tool call's arguments reaches it,
so the model cannot widen it. Inside, the command has no capabilities even when mcode runs as
root (``--cap-drop ALL``): without that, root inside could start its own bwrap with
``--bind / /`` and write anywhere. The read-only re-binds come after the workspace bind, so
the model cannot plant a git hook that the user's next commit would run, nor rewrite the
config that grants it permissions.

It fails loudly: :func:`problem` runs bwrap with the session's own flags on ``true`` once (per
policy, per process); if that fails, :func:`sandboxed_argv` raises :class:`SandboxError`
(a tool error with a hint: install bubblewrap, or choose ``--sandbox danger-full-access``), so
the command does not run, and ``open_session`` says so as an ``error`` event. Never a silent
fallback to running unsandboxed.

Everything that executes code wraps its argv with :func:`sandboxed_argv`; the policy is built
once by :func:`policy_for` from the Settings:

    bash, the pytest tool      the session's policy
    hooks                      at least workspace-write (formatter hooks rewrite files)
    MCP stdio servers          the session's files policy, network always on (see mcp.py)
    team workers               mcode/team/
The bwrap binary is ``MCODE_BWRAP`` (a path or a name on PATH; tests point it at a missing one).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mcode.config import DEFAULT_SANDBOX as DEFAULT_MODE
from mcode.config import SANDBOX_MODES
from mcode.errors import SandboxError

if TYPE_CHECKING:
    from mcode.config import Settings

TMP = Path("/tmp")

__all__ = [
    "DEFAULT_MODE",
    "SANDBOX_MODES",
    "SandboxError",
    "SandboxPolicy",
    "policy_for",
    "problem",
    "sandboxed_argv",
]

UNSANDBOXED_HINT = (
    "install bubblewrap (apt-get install bubblewrap), or run without the sandbox on purpose "
    "with --sandbox danger-full-access"
)
# How long the probe may take before the sandbox is judged broken.
_PROBE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """What a sandboxed process may touch. ``writable`` are the folders it may write (the
    workspace and the ``--add-dir`` folders, in ``workspace-write``); ``protected`` are paths
    re-bound read-only on top of them; ``bwrap`` is the binary (a path or a name on PATH)."""

    mode: str = DEFAULT_MODE
    network: bool = False
    writable: tuple[Path, ...] = ()
    protected: tuple[Path, ...] = ()
    bwrap: str = "bwrap"

    @property
    def active(self) -> bool:
        return self.mode != "danger-full-access"

    def flags(self) -> list[str]:
        """bwrap's options for this policy (everything before ``--``)."""
        out = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        writable = self.mode == "workspace-write"
        if not (writable and TMP in self.writable):
            out += ["--tmpfs", "/tmp"]  # read-only: a private, empty /tmp
        # Binds in order of depth, so a folder inside another is mounted over it: a protected
        # .git/hooks over its writable workspace, and a team producer's worktree (writable)
        # over mcode's protected data folder that holds it. At one depth, writable first.
        binds = [(root, "--bind" if writable else "--ro-bind") for root in self.writable]
        binds += [(path, "--ro-bind") for path in self.protected] if writable else []
        for path, how in sorted(binds, key=lambda b: (len(b[0].parts), b[1] == "--ro-bind")):
            if path != TMP or writable:
                out += [how, str(path), str(path)]
        if not self.network:
            out.append("--unshare-net")
        out += ["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--cap-drop", "ALL"]
        return out

    def moved_to(self, root: Path, old: Path) -> SandboxPolicy:
        """This policy for a conversation working in ``root`` instead of ``old`` (a team
        producer in its git worktree): ``root`` writable in place of ``old``."""
        rest = tuple(w for w in self.writable if w != old.resolve())
        return dataclasses.replace(self, writable=(root.resolve(), *rest))


def policy_for(
    settings: Settings, env: Mapping[str, str] | None = None, *, at_least: str | None = None
) -> SandboxPolicy:
    """The sandbox of a session with these settings (the same for every process it starts).
    ``at_least`` widens a narrower mode to it: hooks run ``workspace-write`` even in a
    read-only session (a formatter hook rewrites files), never beyond what the user chose
    when that is wider (``danger-full-access`` stays unsandboxed)."""
    from mcode.config import config_home, data_home

    env = os.environ if env is None else env
    if at_least is not None and SANDBOX_MODES.index(settings.sandbox_mode) < SANDBOX_MODES.index(
        at_least
    ):
        settings = dataclasses.replace(settings, sandbox_mode=at_least)
    roots = [settings.workspace.resolve()]
    roots += [Path(d).expanduser().resolve() for d in settings.add_dirs]
    if settings.sandbox_mode == "workspace-write":
        # /tmp stays writable and shared, as in Codex's workspace-write: build tools, test
        # runners, X11 and ssh-agent sockets live there. What mcode protects under it (its
        # config and data folders, when they are there) is re-bound read-only all the same.
        roots.append(TMP)
    writable = tuple(dict.fromkeys(roots))
    candidates = [config_home(env), data_home(env)]
    for root in writable:
        candidates += [root / ".git" / "hooks", root / ".git" / "config", root / ".mcode"]
    protected = tuple(_protected(candidates, writable, settings.sandbox_mode))
    return SandboxPolicy(
        mode=settings.sandbox_mode,
        network=settings.sandbox_network,
        writable=writable,
        protected=protected,
        bwrap=env.get("MCODE_BWRAP") or "bwrap",
    )


def _protected(candidates: list[Path], writable: tuple[Path, ...], mode: str) -> list[Path]:
    """The candidates that lie inside a writable folder (elsewhere the root is read-only
    anyway). A missing hooks, ``.mcode`` or config folder is created first (empty; git does not
    track empty folders), so that the model cannot create it and write a config that a trusted
    folder's next session would obey; a missing ``.git/config`` (no repository yet) has nothing
    to protect."""
    out: list[Path] = []
    if mode != "workspace-write":
        return out
    for path in candidates:
        path = Path(os.path.abspath(path))
        if not any(path == r or path.is_relative_to(r) for r in writable):
            continue
        if not path.exists() and path.name in ("hooks", "mcode", ".mcode") and path.parent.is_dir():
            try:
                path.mkdir()
            except OSError:
                continue
        if path.exists():
            out.append(path.resolve())
    return list(dict.fromkeys(out))


def _binary(policy: SandboxPolicy) -> str | None:
    name = policy.bwrap
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


@functools.lru_cache(maxsize=32)
def problem(policy: SandboxPolicy) -> SandboxError | None:
    """Why the sandbox cannot run with this policy (bwrap run with its flags on ``true``), or
    None when it works. Checked once per policy per process."""
    if not policy.active:
        return None
    binary = _binary(policy)
    if binary is None:
        return SandboxError(
            f"the sandbox cannot start: bubblewrap ({policy.bwrap!r}) is not installed or not "
            "executable",
            hint=UNSANDBOXED_HINT,
        )
    true = shutil.which("true") or "/bin/true"
    try:
        done = subprocess.run(
            [binary, *policy.flags(), "--", true],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return SandboxError(f"the sandbox cannot start: {binary}: {e}", hint=UNSANDBOXED_HINT)
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = said[-1] if said else f"exit code {done.returncode}"
        return SandboxError(
            f"the sandbox cannot start: bwrap failed ({why}); user namespaces may be off here",
            hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) "
            "or run mcode as root; or " + UNSANDBOXED_HINT.split(", or ", 1)[1],
        )
    return None


def sandboxed_argv(
    argv: Sequence[str], policy: SandboxPolicy, *, scratch: Sequence[Path] = ()
) -> list[str]:
    """``argv`` to run inside the sandbox (unchanged under ``danger-full-access``). Raises
    :class:`SandboxError` when the sandbox cannot start: the caller must not run anything.
    ``scratch`` are folders of mcode's own that the process must write in every mode (the
    pytest tool's report folder: a read-only sandbox's /tmp is private, so mcode would never
    see the report); they are bound last, over everything."""
    if not policy.active:
        return list(argv)
    failure = problem(policy)
    if failure is not None:
        raise SandboxError(failure.message, hint=failure.hint)
    binary = _binary(policy)
    assert binary is not None  # problem() checked it
    binds = [arg for path in scratch for arg in ("--bind", str(path), str(path))]
    return [binary, *policy.flags(), *binds, "--", *argv]


def describe(policy: SandboxPolicy) -> str:
    """One line for humans: what the sandbox lets commands do."""
    if not policy.active:
        return "no sandbox (danger-full-access): commands can touch everything you can"
    where = (
        "nothing writable but a private /tmp"
        if policy.mode == "read-only"
        else "writable: " + ", ".join(str(r) for r in policy.writable)
    )
    net = "network on" if policy.network else "network off"
    return f"{policy.mode}: {where}; {net}"
