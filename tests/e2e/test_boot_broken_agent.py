"""The boot test's negative: an image whose agent cannot start fails early, with the reason.

It is also the suite's Ubuntu boot (noble, UEFI, zstd qcow2): everything up to the agent must come
up (kernel, cloud-init from the config drive, network, the serial console's login prompt, docker);
the production noble boot that answers rpc_ping is in `make test-extended` (test_boot.py)."""

import re

import pytest

from builder.verify import run_boot_test
from builder.verify.timeline import AGENT_FAILURES_FATAL
from tests.e2e.boots import BOOT_TIMEOUT, assert_boots_lean, explain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def broken_agent_image(images, tmp_path_factory):
    hooks = tmp_path_factory.mktemp("hooks")
    (hooks / "post-install.d").mkdir()
    hook = hooks / "post-install.d" / "50-break-the-agent"
    # the unit's ExecStart gone (the venv stays: the lock stage downloads with its pip)
    hook.write_text("#!/bin/sh\nset -e\nrm /usr/local/bin/guest-agent\n")
    hook.chmod(0o755)
    return images.get("ubuntu", "noble", False, "--hooks-dir", str(hooks))


def test_image_whose_agent_cannot_start_fails_with_a_clear_reason(broken_agent_image, tmp_path):
    # Ends once the agent unit has failed a few times (read from the console), not at the timeout.
    result = run_boot_test(broken_agent_image, firmware="uefi", timeout=BOOT_TIMEOUT,
                           console_log=tmp_path / "console.log")
    assert not result.passed
    checks = {c.name: c for c in result.checks}
    # the guest itself came up (an image that never boots must not pass here): only the agent is missing
    assert checks["login prompt"].ok and checks["cloud-init from config drive"].ok, explain(result)
    assert checks["no emergency/panic"].ok, explain(result)
    assert [name for name, c in checks.items() if not c.ok and c.required] == ["rpc_ping"], explain(result)
    # "failed N times": N is at least AGENT_FAILURES_FATAL, more when the console showed several
    # restarts between two reads of it
    failed = re.match(r"guest-agent\.service failed (\d+) times at boot \(.*status=203/EXEC", result.reason)
    assert failed and int(failed.group(1)) >= AGENT_FAILURES_FATAL, result.reason
    assert {"docker", "agent_unit"} <= {event["name"] for event in result.timeline}, result.timeline
    assert_boots_lean(result, "ubuntu", "noble")  # one network stack, the profile's host keys
    assert result.serial_tail, "a failed boot test shows the end of the console"
