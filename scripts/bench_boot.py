#!/usr/bin/env python3
"""make bench-boot: first-boot milestones of new images against reference images, alternating.

For each release, the reference ("before", e.g. built from an older commit) and the new ("after")
image boot one after the other under the boot test (TCG here), the order swapped every round so
that a machine getting busier or quieter favours neither; several rounds each. TCG times swing
with the machine's load, so what counts is the ratio within one run: per milestone, the median of
each side, their spread (min-max) and after/before of the medians, plus the median of the paired
(same-round) ratios. Writes bench/boot-results.md and .json after every boot, so an interrupted
run still leaves what it measured.

--parallel boots each release's pair at the same time instead (two threads, one QEMU and broker
each; the releases one after another), for a machine so loaded that sequential boots would not fit
the time there is: the pair then sees the same load at the same moment. It leans against the new
image: once it has answered, the reference boot gets its CPU share.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from builder.verify import run_boot_test  # noqa: E402

RELEASES = {"noble": "ubuntu", "bookworm": "debian", "bionic": "ubuntu"}
# Milestones compared: timings of the boot test, then console/host timeline events.
MILESTONES = ["kernel", "cloud_init_local", "network_online", "docker", "agent_unit", "login_prompt",
              "cloud_init_done", "broker_connected", "first_rpc_ping"]
TARGETS = {"first_rpc_ping": {"noble": 0.5, "bookworm": 0.5, "bionic": 0.7},
           "login_prompt": 0.6, "cloud_init_done": 0.6}


def image_name(release: str) -> str:
    return f"trove-guest-{RELEASES[release]}-{release}.qcow2"


def milestones(result) -> dict[str, float | None]:
    found = {e["name"]: e["seconds"] for e in result.timeline}
    return {name: found.get(name, result.timings.get(name)) for name in MILESTONES}


def boot(image: Path, console: Path, timeout: float) -> dict:
    t = time.time()
    result = run_boot_test(image, console_log=console, timeout=timeout)
    return {"image": str(image), "passed": result.passed, "reason": result.reason,
            "started": time.strftime("%H:%M:%S", time.localtime(t)), "milestones": milestones(result),
            "network_stacks": result.network_stacks, "host_key_types": result.host_key_types}


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 1), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict]) -> dict:
    """release -> milestone -> before/after stats, ratio of medians, median of paired ratios."""
    out: dict[str, dict] = {}
    for release in dict.fromkeys(r["release"] for r in runs):
        rel = [r for r in runs if r["release"] == release]
        out[release] = {}
        for name in MILESTONES:
            # A milestone a boot reached counts even if the boot failed later (e.g. timed out).
            side = {s: [r["milestones"][name] for r in rel if r["side"] == s
                        and r["milestones"][name] is not None] for s in ("before", "after")}
            paired = []
            for rnd in sorted({r["round"] for r in rel}):
                pair = {r["side"]: r["milestones"][name] for r in rel if r["round"] == rnd}
                if pair.get("before") and pair.get("after") is not None:
                    paired.append(pair["after"] / pair["before"])
            before, after = spread(side["before"]), spread(side["after"])
            out[release][name] = {
                "before": before, "after": after,
                "ratio": (round(after["median"] / before["median"], 2)
                          if before and after and before["median"] else None),
                "paired_ratio": round(statistics.median(paired), 2) if paired else None}
    return out


def target_for(name: str, release: str) -> float | None:
    target = TARGETS.get(name)
    return target.get(release) if isinstance(target, dict) else target


def fmt(stats: dict | None) -> str:
    if not stats:
        return "-"
    return f"{stats['median']:.1f} ({stats['min']:.1f}-{stats['max']:.1f})"


def write_report(data: dict, out_dir: Path) -> None:
    (out_dir / "boot-results.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = ["# First boot: new images against reference images (`make bench-boot`)", "",
             f"Run {data['started']} to {data.get('finished', '(running)')} on {data['host']}; "
             f"TCG, 2 vCPU, 2 GiB, config drive, blank 2 GiB data disk; {data['rounds']} round(s), "
             + ("each release's pair booted at once (--parallel). " if data.get("mode") == "parallel" else
                "before/after alternating (order swapped each round). ") + "Seconds since QEMU started: "
             "median (min-max). ratio = after/before of the medians; paired = median of the "
             "same-round ratios.", "",
             f"before: {data['before_dir']}  ", f"after: {data['after_dir']}", ""]
    for release, table in data["summary"].items():
        lines += [f"## {release}", "", "| milestone | before | after | ratio | paired | target |",
                  "|---|---|---|---|---|---|"]
        for name, row in table.items():
            target = target_for(name, release)
            ok = ""
            if target is not None and row["ratio"] is not None:
                ok = f"≤ {target} {'met' if row['ratio'] <= target else 'MISSED'}"
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            paired = "-" if row["paired_ratio"] is None else f"{row['paired_ratio']:.2f}x"
            lines.append(f"| {name} | {fmt(row['before'])} | {fmt(row['after'])} | {ratio} | {paired} | {ok} |")
        for side in ("before", "after"):
            seen = {(", ".join(r["network_stacks"]) or "-", ", ".join(r["host_key_types"]) or "-")
                    for r in data["runs"] if r["release"] == release and r["side"] == side}
            if seen:
                lines.append(f"\n{side}: network stacks started / ssh host key types: "
                             + "; ".join(f"{stacks} / {keys}" for stacks, keys in sorted(seen)))
        failed = [r for r in data["runs"] if r["release"] == release and not r["passed"]]
        if failed:
            lines += ["", "Failed boots (only the milestones they reached count): "
                      + "; ".join(f"{r['side']} round {r['round']}: {r['reason']}" for r in failed)]
        lines.append("")
    (out_dir / "boot-results.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-dir", type=Path, required=True,
                        help="Reference images (trove-guest-<os>-<release>.qcow2).")
    parser.add_argument("--after-dir", type=Path, default=REPO / "images", help="New images, same names.")
    parser.add_argument("--releases", default="noble,bookworm,bionic")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench")
    parser.add_argument("--console-dir", type=Path, default=None, help="Keep every serial console here.")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="Seconds per boot (a loaded machine's TCG is slow).")
    parser.add_argument("--parallel", action="store_true", help="Boot each release's pair at once (see above).")
    args = parser.parse_args()
    releases = [r for r in args.releases.split(",") if r]
    unknown = [r for r in releases if r not in RELEASES]
    if unknown:
        sys.exit(f"bench-boot: unknown release(s) {', '.join(unknown)} (known: {', '.join(RELEASES)})")
    for release in releases:
        for side_dir in (args.before_dir, args.after_dir):
            if not (side_dir / image_name(release)).is_file():
                sys.exit(f"bench-boot: no {image_name(release)} in {side_dir}")
    consoles = args.console_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-boot-{os.getpid()}"
    consoles.mkdir(parents=True, exist_ok=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": f"{platform.node()}, {os.cpu_count()} CPUs",
            "rounds": args.rounds, "before_dir": str(args.before_dir), "after_dir": str(args.after_dir),
            "runs": [], "summary": {}}
    data["mode"] = "parallel" if args.parallel else "alternating"
    lock = threading.Lock()

    def one(rnd: int, release: str, side: str) -> None:
        image = (args.before_dir if side == "before" else args.after_dir) / image_name(release)
        print(f"round {rnd} {release} {side}: booting {image}", flush=True)
        run = {"round": rnd, "release": release, "side": side,
               **boot(image, consoles / f"{release}-{side}-{rnd}.log", args.timeout)}
        print(f"  round {rnd} {release} {side} {'passed' if run['passed'] else 'FAILED: ' + run['reason']}: "
              f"{json.dumps(run['milestones'])}", flush=True)
        with lock:
            data["runs"].append(run)
            data["summary"] = summarize(data["runs"])
            write_report(data, args.out_dir)

    for rnd in range(1, args.rounds + 1):
        for release in releases:
            sides = ("before", "after") if rnd % 2 else ("after", "before")
            if args.parallel:
                threads = [threading.Thread(target=one, args=(rnd, release, side)) for side in sides]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            else:
                for side in sides:
                    one(rnd, release, side)
    data["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    write_report(data, args.out_dir)
    print((args.out_dir / "boot-results.md").read_text())


if __name__ == "__main__":
    main()
