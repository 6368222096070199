"""A helper process of the accounting: `python -m MODULE ARGS...`, talking over its stdin/stdout.

The SQLite writer and the journal helper run this way, so that their blocking work (inserts,
commits, fsyncs) never needs this process's GIL. A child started here finds the same proxyapp
package as this process, exits when its stdin closes (this process's death included), and is
killed when it does not.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import proxyapp

# Where the child finds the proxyapp package this process runs (an unusual sys.path included).
_PKG_ROOT = str(Path(proxyapp.__file__).resolve().parent.parent)


class ChildProcess:
    """One child at a time: started on demand, replaced after kill()."""

    def __init__(self, module: str, args: list[str]) -> None:
        self.module = module
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> asyncio.subprocess.Process:
        """The running child, started if there is none."""
        if self.proc is not None and self.proc.returncode is None:
            return self.proc
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PKG_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )
        return self.proc

    async def kill(self) -> None:
        """SIGKILL the child and reap it (its stream is out of step, or it hangs)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except (asyncio.TimeoutError, Exception):
            pass

    async def close(self) -> None:
        """Close its stdin (it exits after the work in hand); kill it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 5)
        except (asyncio.TimeoutError, Exception):
            self.proc = proc
            await self.kill()
