"""`trove-builder cache ls | prune | clear` as the README shows them, on a cache of real checkpoints
(written by the stage cache itself), through --cache-dir and TROVE_BUILDER_CACHE."""

from __future__ import annotations

import os
import re
import time

from builder.cache.stagecache import StageCache
from tests.conftest import run_tb
from tests.integration.test_cli_errors import assert_one_line_error

KIB100 = 100_000


def filled_cache(root):
    """Three image checkpoints of 100 kB, used in the order d (oldest), e, f (newest); and a download."""
    cache = StageCache(root)
    payload = root.parent / "payload.raw"
    payload.write_bytes(os.urandom(KIB100))
    for age, key in ((3000, "d"), (2000, "e"), (1000, "f")):
        cache.save_file("image", key * 64, payload, {})
        stamp = cache.entry_dir("image", key * 64) / "last-used"
        stamp.touch()
        os.utime(stamp, (time.time() - age, time.time() - age))
    (root / "apt" / "debian-bookworm").mkdir(parents=True)
    (root / "apt" / "debian-bookworm" / "bash_5.2_amd64.deb").write_bytes(b"a download")
    return cache


def names(stdout: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^image-(\w)\w* ", stdout, re.M)]


def test_ls_lists_most_recently_used_first(tmp_path):
    filled_cache(tmp_path / "cache")
    result = run_tb("cache", "ls", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert names(result.stdout) == ["f", "e", "d"]
    assert result.stdout.splitlines()[-1].startswith("3 entries, ")
    assert str(tmp_path / "cache" / "stages") in result.stdout


def test_prune_drops_the_least_recently_used_down_to_the_size(tmp_path):
    cache = filled_cache(tmp_path / "cache")
    result = run_tb("cache", "prune", "--max-size", str(2 * KIB100 + 50_000),
                    env={"TROVE_BUILDER_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^removed image-(\w)", result.stdout, re.M) == ["d"]
    assert result.stdout.splitlines()[-1].startswith("1 removed; ")
    assert sorted(e.path.name[6] for e in cache.entries()) == ["e", "f"]


def test_clear_removes_every_checkpoint_and_keeps_downloads(tmp_path):
    cache = filled_cache(tmp_path / "cache")
    result = run_tb("cache", "clear", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("3 removed (")
    assert cache.entries() == []
    assert (tmp_path / "cache" / "apt" / "debian-bookworm" / "bash_5.2_amd64.deb").read_bytes() == b"a download"


def test_a_bad_size_is_one_line(tmp_path):
    assert_one_line_error(run_tb("cache", "prune", "--max-size", "lots", "--cache-dir", str(tmp_path)), 2,
                          "is not a size")
