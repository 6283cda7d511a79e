"""Helpers the tests use to look at what the boot test writes and runs (not needed by the product)."""

from __future__ import annotations

import base64
import configparser
import io
from pathlib import Path

import yaml


def decode_user_data(text: str) -> dict[str, str]:
    """Path -> decoded content of a user data document's write_files (used by tests and reports)."""
    doc = yaml.safe_load(text)
    return {e["path"]: base64.b64decode(e["content"]).decode() for e in doc.get("write_files", [])}


def parse_ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep key case
    parser.read_string(text)
    return parser


def read_config_drive(path: Path) -> tuple[str, dict[str, bytes]]:
    """(volume label, Rock Ridge path -> content) of a config drive; for tests and debugging."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        found: dict[str, bytes] = {}
        for dirpath, _dirs, names in iso.walk(rr_path="/"):
            for name in names:
                rr = f"{dirpath.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=rr)
                found[rr] = buf.getvalue()
        return label, found
    finally:
        iso.close()


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its parent's wait() counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
