"""Inside the builder container: stop the build as soon as the CLI that started it is gone.

The CLI holds the output claim (claims/output.py) for the whole build, and the container sees that
file through its /out mount. If the lock can be taken, its holder died without stopping us
(SIGKILL, OOM killer, a lost session): the watchdog keeps the lock, so no new build to the same
output starts while this one cleans up, and interrupts the main thread, which unwinds exactly as
on Ctrl-C (the running command killed, mounts undone, partial files and the work dir removed).
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.claims.flock import Flock

# The container's path of the lock its CLI holds (set by runtime/container.py).
OWNER_CLAIM_ENV = "TROVE_BUILDER_OWNER_LOCK"
POLL_SECONDS = 1.0


class Watchdog:
    def __init__(self, path: Path, poll: float = POLL_SECONDS):
        self.path = path
        self.poll = poll
        self.taken: Flock | None = None
        self._stop = threading.Event()
        self._main = threading.main_thread().ident or 0  # set once the main thread runs, as it does here
        try:  # the very file the CLI locked, even if the path is later reused
            self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            self._fd = -1
        self._thread = threading.Thread(target=self._watch, name="owner-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def _watch(self) -> None:
        if self._fd >= 0:
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self._stop.wait(self.poll):
                        return
            self.taken = Flock(self.path, self._fd)
            self.taken.describe(f"build container {socket.gethostname()}, cleaning up after its CLI died")
        if not self._stop.is_set():
            # SIGINT: Python handles it from the start (even as PID 1, where an unhandled
            # signal is dropped), and sent to the main thread it interrupts a blocking read.
            signal.pthread_kill(self._main, signal.SIGINT)

    def stop(self) -> None:
        """The build is over: stop watching; if we took the lock over, remove it as its holder."""
        self._stop.set()
        self._thread.join(timeout=self.poll + 1)
        if self.taken is not None:
            self.taken.release()
        elif self._fd >= 0:
            os.close(self._fd)
        self._fd = -1


@contextmanager
def watch_owner(path: str | None = None) -> Iterator[Watchdog | None]:
    """Run the body under a watchdog on the owner lock named by $TROVE_BUILDER_OWNER_LOCK, if set."""
    path = path or os.environ.get(OWNER_CLAIM_ENV)
    if not path:
        yield None
        return
    # A build started in the background by a script inherits SIGINT ignored (POSIX shells do that to
    # asynchronous commands), and an ignored SIGINT would never interrupt it: handle it again.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    dog = Watchdog(Path(path)).start()
    try:
        yield dog
    finally:
        dog.stop()
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
