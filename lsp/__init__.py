"""The mcode language server (``mcode lsp``): editors drive the agent through LSP.

Installed as ``mcode.lsp``; imports pygls only when the server starts. :mod:`.server` holds
the handlers, :mod:`.tasks` the Sessions they run, :mod:`.editor` the buffers and edits,
:mod:`.actions` the code actions, :mod:`.inline` inline completion, :mod:`.review` the
diagnostics, :mod:`.protocol` the answers to requests pygls would leave unanswered.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    try:
        from .server import serve
    except ImportError as e:
        print(
            f"mcode lsp needs pygls ({e}); run: pip install 'mcode[lsp]'",
            file=sys.stderr,
        )
        return 2
    flags = {
        "provider": args.provider,
        "model": args.model,
        "base_url": args.base_url,
        "permission_mode": args.permission_mode,
        "approval_timeout": args.approval_timeout,
    }
    cwd = Path(args.cwd or os.getcwd()).expanduser().resolve()
    try:
        return serve(flags, cwd=cwd, tcp=args.tcp)
    except KeyboardInterrupt:
        return 130
