"""Reading a guest's serial console log: wait for a line, time it, quote the tail on failure.

QEMU writes the guest's ttyS0 to a file; the harness never types into it. Terminal escape
sequences (GRUB's menu, systemd's colours) are stripped before matching.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]")

# Markers the boot test looks for (multiline regexes over the cleaned log).
LOGIN_PROMPT = r"^(?!Last login)[A-Za-z0-9][A-Za-z0-9.-]* login:"
CLOUD_INIT_DONE = r"Cloud-init v\. \S+ finished at .*"
KERNEL_STARTED = r"Linux version \d|\[\s*\d+\.\d+\] "
FATAL = {
    "kernel panic": r"Kernel panic - not syncing.*",
    "emergency shell": r"You are in emergency mode|Give root password for maintenance|Entering emergency mode",
    "initramfs shell": r"\(initramfs\)\s*$|Dropping to a shell",
    "no bootable device": r"No bootable device|Boot failed: not a bootable disk",
}


def clean(text: str) -> str:
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


class ConsoleTimeout(Exception):
    """A pattern did not appear in time."""


class SerialConsole:
    """The serial log file of one VM, with times measured from `t0` (time.monotonic())."""

    def __init__(self, path: Path, t0: float | None = None):
        self.path = Path(path)
        self.t0 = time.monotonic() if t0 is None else t0
        self._raw = b""
        self._lock = threading.Lock()

    def text(self) -> str:
        """Everything logged so far, cleaned (re-reads only what was appended)."""
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(len(self._raw))
                    self._raw += fh.read()
            except FileNotFoundError:
                pass
            return clean(self._raw.decode("utf-8", errors="replace"))

    def search(self, pattern: str) -> re.Match | None:
        return re.search(pattern, self.text(), re.MULTILINE)

    def tail(self, lines: int = 40) -> list[str]:
        """The last `lines` non-blank lines."""
        kept = [line.rstrip() for line in self.text().splitlines() if line.strip()]
        return kept[-lines:]

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def wait_for(self, pattern: str, timeout: float, *, poll: float = 0.5,
                 abort: Callable[[], str | None] | None = None) -> tuple[float, re.Match]:
        """Block until `pattern` appears; return (seconds since t0, match).

        Raises ConsoleTimeout after `timeout` s, or at once with abort()'s reason when it
        returns one (e.g. QEMU exited).
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.search(pattern)
            if found:
                return self.elapsed(), found
            why = abort() if abort else None
            if why:
                raise ConsoleTimeout(f"{why} before the console showed /{pattern}/")
            if time.monotonic() >= deadline:
                raise ConsoleTimeout(f"the console did not show /{pattern}/ within {timeout:.0f} s")
            time.sleep(poll)


@dataclass
class ConsoleWatcher:
    """A background poller recording when each marker first appears, so slow RPC calls in the
    foreground do not blur the boot timings."""

    console: SerialConsole
    markers: Mapping[str, str]
    fatal: Mapping[str, str] = field(default_factory=lambda: dict(FATAL))
    poll: float = 0.5
    seen: dict[str, float] = field(default_factory=dict)
    matches: dict[str, str] = field(default_factory=dict)
    fatal_seen: str | None = None

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-watcher", daemon=True)

    def start(self) -> ConsoleWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.check()  # a last look

    def __enter__(self) -> ConsoleWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def check(self) -> None:
        text = self.console.text()
        now = self.console.elapsed()
        for name, pattern in self.markers.items():
            if name not in self.seen:
                found = re.search(pattern, text, re.MULTILINE)
                if found:
                    self.seen[name] = now
                    self.matches[name] = found.group(0).strip()
        if self.fatal_seen is None:
            for name, pattern in self.fatal.items():
                found = re.search(pattern, text, re.MULTILINE)
                if found:
                    self.fatal_seen = f"{name}: {found.group(0).strip()}"
                    break

    def _run(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._stop.wait(self.poll)

    def wait_for(self, name: str, timeout: float, abort: Callable[[], str | None] | None = None) -> float | None:
        """Seconds since t0 when marker `name` appeared, waiting up to `timeout`; None if not."""
        deadline = time.monotonic() + timeout
        while name not in self.seen:
            if time.monotonic() >= deadline or (abort and abort()):
                self.check()
                return self.seen.get(name)
            time.sleep(self.poll)
        return self.seen[name]
