"""A stand-in for the Trove controller that dev-mode guests rsync their agent code from.

A dev image's guest-agent unit runs, once, as root in the guest:
    rsync -a -e 'ssh -i ~<guest>/.ssh/id_rsa ...' <controller_user>@$CONTROLLER:<controller_path>/ ~<guest>/trove
with the user and path baked in at build time (`stack`, `/opt/stack/trove` by default).

OpenSSH's sshd would need that account to exist on this host and the checkout to live at that
very path. Instead, this is a small in-process SSH server (asyncssh) on 127.0.0.1 that accepts
only the operator's deploy key for `controller_user`, only runs `rsync --server --sender`
(read-only), and maps `controller_path` onto the local source tree; rsync runs as the harness's
own user. The guest reaches it through QEMU's guestfwd at 10.0.2.100:22, so the guest sees an
ordinary controller on port 22 and its image needs no change.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder import defaults
from builder.errors import BuilderError
from builder.verify.qemu import GuestFwd

GUEST_CONTROLLER_ADDR = "10.0.2.100"

RELAY = r'''"""stdin/stdout <-> TCP relay (QEMU guestfwd runs one per guest connection)."""
import os, select, socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
open_in, open_sock = True, True
while open_sock:
    ready, _, _ = select.select([0, sock] if open_in else [sock], [], [])
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            sock.sendall(data)
        else:
            open_in = False
            sock.shutdown(socket.SHUT_WR)
    if sock in ready:
        data = sock.recv(65536)
        if not data:
            open_sock = False
        else:
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
'''


async def _pump(reader, writer, close: bool = False) -> None:
    """Copy bytes until EOF (or until the other side goes away)."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, BrokenPipeError, OSError):
        pass
    finally:
        if close:
            with contextlib.suppress(Exception):
                writer.close()


class ControllerError(BuilderError):
    """The fake controller could not be set up (missing rsync, bad key, missing source)."""


def _asyncssh() -> Any:  # the verify extra: the module, or a clear error
    try:
        import asyncssh
    except ImportError as exc:
        raise ControllerError("asyncssh is not installed: pip install 'trove-builder[verify]'") from exc
    return asyncssh


def public_key_of(key_path: Path) -> str:
    """OpenSSH public key line for a private key file (or a .pub file given directly)."""
    asyncssh = _asyncssh()
    try:
        text = Path(key_path).read_text()
    except OSError as exc:
        raise ControllerError(f"cannot read controller key {key_path}: {exc.strerror}") from exc
    try:
        if text.lstrip().startswith(("ssh-", "ecdsa-", "sk-")):
            key = asyncssh.import_public_key(text)
        else:
            key = asyncssh.import_private_key(text).convert_to_public()
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise ControllerError(f"{key_path} is not an SSH key asyncssh can read: {exc}") from exc
    return key.export_public_key().decode().strip()


@dataclass
class FakeController:
    """Serve `source` read-only over SSH as `user`@controller:`path`, for keys in `client_key`."""

    source: Path
    client_key: Path
    user: str = defaults.CONTROLLER_USER
    path: str = defaults.CONTROLLER_PATH
    host: str = "127.0.0.1"
    port: int = 0
    served: list[str] = field(default_factory=list)     # rsync commands run
    refused: list[str] = field(default_factory=list)    # what was refused, and why
    logins: list[str] = field(default_factory=list)     # user names that authenticated
    exit_codes: list[int] = field(default_factory=list)  # of each served rsync, in order

    def __post_init__(self):
        self.source = Path(self.source).resolve()
        self.path = "/" + self.path.strip("/")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._tmp: Path | None = None
        self._tasks: set = set()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeController:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        asyncssh = _asyncssh()
        if not self.source.is_dir():
            raise ControllerError(f"controller source {self.source} is not a directory")
        if shutil.which("rsync") is None:
            raise ControllerError("rsync not found on this host (the guest's rsync needs its server side): "
                                  "apt-get install rsync")
        authorized = asyncssh.import_authorized_keys(public_key_of(self.client_key) + "\n")
        self._tmp = Path(tempfile.mkdtemp(prefix="trove-boot-test-controller-"))
        (self._tmp / "relay.py").write_text(RELAY)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-controller", daemon=True)
        self._thread.start()
        owner = self
        server_base: Any = asyncssh.SSHServer  # the verify extra, imported at run time

        class _Server(server_base):
            def connection_made(self, conn):
                self._conn = conn

            def begin_auth(self, username):
                # Keys are authorized for the controller user only; anyone else cannot log in.
                if username == owner.user:
                    self._conn.set_authorized_keys(authorized)
                return True

            def public_key_auth_supported(self):
                return True

            def auth_completed(self):
                owner.logins.append(self._conn.get_extra_info("username"))

        async def _start():
            return await asyncssh.create_server(
                _Server, self.host, self.port, server_host_keys=[host_key],
                process_factory=self._handle, encoding=None, allow_scp=False, sftp_factory=None,
                agent_forwarding=False, x11_forwarding=False, allow_pty=False)

        try:
            self._server = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            server, self._server = self._server, None

            async def _close():
                if server is not None:
                    server.close()
                    await server.wait_closed()
                # Connections still closing (e.g. refused logins): finish them before the loop ends.
                pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await loop.shutdown_asyncgens()

            try:
                asyncio.run_coroutine_threadsafe(_close(), loop).result(timeout=10)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            loop.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- what the guest sees -----------------------------------------------------------------
    def relay_command(self) -> str:
        """The host command that joins one guest connection to this server (stdin/stdout)."""
        assert self._tmp is not None, "start() first"
        return f"{sys.executable} {self._tmp / 'relay.py'} {self.host} {self.port}"

    def guestfwd(self, guest_addr: str = GUEST_CONTROLLER_ADDR, guest_port: int = 22) -> GuestFwd:
        return GuestFwd(guest_addr, guest_port, self.relay_command())

    # -- serving -----------------------------------------------------------------------------
    def map_command(self, command: str | None) -> list[str]:
        """The local argv for a guest's exec request, or ControllerError why it is refused."""
        if not command:
            raise ControllerError("interactive sessions are not served")
        argv = shlex.split(command)
        if not argv or Path(argv[0]).name != "rsync" or "--server" not in argv or "--sender" not in argv:
            raise ControllerError(f"only `rsync --server --sender` is served, not {command!r}")
        out = ["rsync"]
        options_done = False
        for arg in argv[1:]:
            if not options_done and arg == ".":
                options_done = True
                out.append(arg)
                continue
            if options_done or not arg.startswith("-"):
                out.append(self._map_path(arg))
            else:
                out.append(arg)
        return out

    def _map_path(self, arg: str) -> str:
        norm = "/" + arg.strip("/") if arg.startswith("/") else arg
        if ".." in Path(norm).parts or not (norm == self.path or norm.startswith(self.path + "/")):
            raise ControllerError(f"path {arg!r} is outside {self.path}")
        mapped = str(self.source) + norm[len(self.path):]
        return mapped + ("/" if arg.endswith("/") and not mapped.endswith("/") else "")

    async def _handle(self, process) -> None:
        # Hold the task strongly: asyncssh may drop its last reference when the SSH connection
        # closes before rsync has exited, and a collected task would leave rsync behind.
        task = asyncio.current_task()
        self._tasks.add(task)
        local = None
        try:
            command = process.command
            try:
                argv = self.map_command(command)
            except ControllerError as exc:
                self.refused.append(str(exc))
                process.stderr.write(f"fake controller: {exc}\n".encode())
                process.exit(1)
                return
            self.served.append(command)
            local = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=str(self.source))
            # Plain pumps rather than process.redirect(), whose cleanup leaves coroutines unawaited.
            to_local = asyncio.ensure_future(_pump(process.stdin, local.stdin, close=True))
            outputs = [asyncio.ensure_future(_pump(local.stdout, process.stdout)),
                       asyncio.ensure_future(_pump(local.stderr, process.stderr))]
            try:
                await asyncio.gather(*outputs, return_exceptions=True)
                code = await local.wait()
            finally:
                to_local.cancel()
                await asyncio.gather(to_local, return_exceptions=True)
            self.exit_codes.append(code)
            with contextlib.suppress(Exception):
                process.exit(code)
        finally:
            if local is not None and local.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    local.kill()
                await local.wait()
            self._tasks.discard(task)
