"""make bench-boot's arithmetic: medians, spread and ratios of paired before/after boots."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_boot.py"
spec = importlib.util.spec_from_file_location("bench_boot", SCRIPT)
bench_boot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_boot)


def run(rnd, side, ping, passed=True):
    milestones = {name: None for name in bench_boot.MILESTONES}
    milestones["first_rpc_ping"] = ping
    stacks, keys = (["ifupdown", "systemd-networkd"], ["ecdsa", "ed25519", "rsa"]) if side == "before" else \
        (["systemd-networkd"], ["ed25519"])
    return {"round": rnd, "release": "noble", "side": side, "passed": passed, "reason": "",
            "milestones": milestones, "network_stacks": stacks, "host_key_types": keys}


def test_medians_spread_and_ratios(tmp_path):
    runs = [run(1, "before", 200.0), run(1, "after", 90.0), run(2, "after", 110.0), run(2, "before", 180.0),
            run(3, "before", 220.0), run(3, "after", 100.0), run(4, "after", None, passed=False)]
    row = bench_boot.summarize(runs)["noble"]["first_rpc_ping"]
    assert row["before"] == {"median": 200.0, "min": 180.0, "max": 220.0, "n": 3}
    assert row["after"] == {"median": 100.0, "min": 90.0, "max": 110.0, "n": 3}  # the failed boot never answered
    assert row["ratio"] == 0.5
    assert row["paired_ratio"] == round(sorted([90 / 200, 110 / 180, 100 / 220])[1], 2)
    assert bench_boot.summarize(runs)["noble"]["docker"]["ratio"] is None
    data = {"started": "s", "host": "h", "rounds": 3, "before_dir": "b", "after_dir": "a", "runs": runs,
            "summary": bench_boot.summarize(runs)}
    bench_boot.write_report(data, tmp_path)
    table = (tmp_path / "boot-results.md").read_text()
    assert "| first_rpc_ping | 200.0 (180.0-220.0) | 100.0 (90.0-110.0) | 0.50x |" in table
    assert "≤ 0.5 met" in table and "Failed boots" in table
    assert ("before: network stacks started / ssh host key types: ifupdown, systemd-networkd / "
            "ecdsa, ed25519, rsa") in table
    assert "after: network stacks started / ssh host key types: systemd-networkd / ed25519" in table
