#!/usr/bin/env python3
"""Record the AppArmor feature set of the kernel an image boots, for the build's precompiled cache.

apparmor_parser keys its cache by the running kernel's feature set, which only that kernel can tell
(/sys/kernel/security/apparmor/features); the builder container runs another kernel. So each guest
kernel's set is data, under builder/apparmor-features/<kernel release>.features, recorded once by
booting an image with that kernel: its guest report prints the .features file apparmor_parser wrote
beside the profiles it compiled at that boot (the newest .features there: a build's cache for another
kernel's set stays beside it). Run it when the archive gives a release a kernel of a series with no
recorded set: the build's log then says the profiles will be compiled at first boot, and
tests/integration/test_build.py::test_first_boot_work_is_done_by_the_build fails.

    .venv/bin/python scripts/record_apparmor_features.py OUT/trove-guest-ubuntu-noble.qcow2 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.guest.apparmor import FEATURES_DIR, features_path  # noqa: E402
from builder.verify.boottest import run_boot_test  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()
    status = 0
    for image in args.images:
        result = run_boot_test(image, timeout=args.timeout, guest_report=True,
                               progress=lambda msg: print(f"  {msg}", file=sys.stderr))
        report = result.guest_report or {}
        kernel, features = report.get("kernel_release", ""), report.get("apparmor_features", "")
        if not kernel or not features:
            print(f"{image}: the guest reported no kernel release or no AppArmor feature set "
                  f"({'passed' if result.passed else 'boot failed: ' + str(result.reason)})", file=sys.stderr)
            status = 1
            continue
        FEATURES_DIR.mkdir(parents=True, exist_ok=True)
        path = features_path(kernel)
        path.write_text(features)  # as written: apparmor_parser hashes these exact bytes
        print(f"{image}: kernel {kernel}: {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
