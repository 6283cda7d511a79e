"""Running commands with their output in the build log, and failures as one readable error."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

from builder.errors import BuilderError

TAIL_LINES = 15


class CommandFailed(BuilderError):
    """A build command exited non-zero; the message names it and quotes its last lines."""


class Log:
    """The build log: every command and its output go here; stdout only with --verbose."""

    def __init__(self, path: Path | None, verbose: bool = False, shown_as: str | None = None):
        self.path = path
        self.shown_as = shown_as or (str(path) if path else None)
        self.verbose = verbose
        self._fh = open(path, "a", buffering=1) if path else None

    def write(self, text: str) -> None:
        if self._fh:
            self._fh.write(text)
        if self.verbose:
            sys.stdout.write(text)
            sys.stdout.flush()

    def close(self) -> None:
        if self._fh:
            try:
                self._fh.close()
            except OSError:
                pass  # a full disk loses the log's last line; the build's own error says why
            self._fh = None


def run(
    cmd: Sequence[str | os.PathLike],
    log: Log,
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    check: bool = True,
    capture: bool = False,
) -> subprocess.CompletedProcess:
    """Run `cmd`, teeing its output into the log; raise CommandFailed with its tail on failure."""
    argv = [str(c) for c in cmd]
    log.write(f"+ {shlex.join(argv)}\n")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if not capture else subprocess.PIPE,
        env=full_env,
        cwd=cwd,
        text=True,
        errors="replace",
    )
    try:
        if capture:
            out, err = proc.communicate(input)
            log.write(err or "")
            lines = (err or "").splitlines()
        else:
            assert proc.stdout is not None  # stdout=PIPE
            if input is not None:
                assert proc.stdin is not None  # stdin=PIPE when there is input
                proc.stdin.write(input)
                proc.stdin.close()
            tail: deque[str] = deque(maxlen=TAIL_LINES)
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
            proc.wait()
            out, err, lines = "", "", list(tail)
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM): the child must not outlive us and keep writing.
        proc.kill()
        proc.wait()
        raise
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err or "")
    if check and proc.returncode != 0:
        where = f" (full log: {log.shown_as})" if log.shown_as else ""
        detail = "\n".join("    " + line for line in lines[-TAIL_LINES:])
        raise CommandFailed(
            f"'{shlex.join(argv[:4])}{' ...' if len(argv) > 4 else ''}' exited with "
            f"{proc.returncode}{where}" + (f"\n{detail}" if detail else "")
        )
    return result
