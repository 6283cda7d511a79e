"""run_pip: the agent venv's pip, or one clear error when a hook removed the venv."""

from types import SimpleNamespace

import pytest

from builder.errors import BuilderError
from builder.guest.pip import run_pip


def test_a_removed_venv_is_named_not_a_bare_exit_127(tmp_path):
    ctx = SimpleNamespace(rootfs=tmp_path, spec=SimpleNamespace(pip_index_url="https://pypi.org/simple"))
    with pytest.raises(BuilderError, match=r"/opt/guest-agent-venv/bin/pip is gone: the agent venv was removed"):
        run_pip(ctx, None, "download", "trove")
