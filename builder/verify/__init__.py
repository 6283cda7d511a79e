"""The boot test (`trove-builder boot-test`): boot an image under QEMU the way Trove would use it.

Modules, one job each: rabbitmq (a throw-away broker), configdrive (Trove's user data on a
config-2 ISO), kvm (is KVM real?), qemu (boot with overlay, data disk, config drive), console
(serial log markers and timings), rpc (oslo.messaging client), controller (dev-mode code
source), procs (child processes that never leak), boottest (the glue and the report).

Nothing here imports oslo.messaging, pycdlib or asyncssh at import time.
"""

from builder.verify.boottest import BootTestResult, render_result_table, run_boot_test

__all__ = ["BootTestResult", "render_result_table", "run_boot_test"]
