"""The privilege probe a build runs before its first stage, in the places it must say no: a user
namespace (what rootless Podman/Docker give a container) and a container without the capabilities."""

from __future__ import annotations

import subprocess
import sys

PROBE = ("from builder.runtime import privileges\n"
         "try:\n    privileges.check()\nexcept Exception as exc:\n    print(exc)\nelse:\n    print('allowed')\n")


def test_this_host_as_root_is_allowed():
    assert subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True).stdout == "allowed\n"


def test_a_user_namespace_is_refused_naming_why():
    """`unshare --user --map-root-user`: root with every capability, inside a user namespace, as rootless."""
    done = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c", PROBE],
                          capture_output=True, text=True)
    assert done.stdout.startswith("device nodes are refused here (Operation not permitted): this is a user "
                                  "namespace (a rootless container)"), done.stdout + done.stderr
    assert "run the engine as root" in done.stdout


def test_missing_capabilities_are_named_with_the_flags():
    """Root without CAP_SYS_ADMIN in its bounding set (setpriv, util-linux), as in a container started
    without --cap-add SYS_ADMIN."""
    done = subprocess.run(["setpriv", "--bounding-set=-sys_admin", "--", sys.executable, "-c", PROBE],
                          capture_output=True, text=True)
    assert "this process lacks CAP_SYS_ADMIN" in done.stdout, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("--cap-add SYS_ADMIN --cap-add MKNOD --cap-add AUDIT_WRITE "
                                         "--security-opt seccomp=unconfined --security-opt apparmor=unconfined")
