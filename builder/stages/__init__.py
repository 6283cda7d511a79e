"""The pipeline's stages, one job each, in the one table everything else derives from.

The pipeline runs STAGES in order; the stage cache's checkpoints (builder/cache/stagekeys.py) group
consecutive stages by `checkpoint`; `trove-builder lock` runs up to the lock stage;
templates/files.yaml names the stage that writes each guest file. No stage imports another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from builder.context import BuildContext
from builder.guest.render import file_table
from builder.stages import agent, assemble, bootstrap, export, hooks, lock, normalize, preload, system


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[BuildContext], None]
    checkpoint: str  # the stage-cache checkpoint stored after the last stage that names it
    hook_phases: tuple[str, ...] = ()  # the operator's hook phases this stage runs


STAGES: tuple[Stage, ...] = (
    Stage("bootstrap", bootstrap.DESCRIPTION, bootstrap.run_stage, "bootstrap"),
    Stage("pre-hooks", hooks.PRE_DESCRIPTION, hooks.run_pre_install, "system", hooks.PRE_INSTALL_PHASES),
    Stage("system", system.DESCRIPTION, system.run_stage, "system"),
    Stage("agent", agent.DESCRIPTION, agent.run_stage, "agent"),
    Stage("hooks", hooks.POST_DESCRIPTION, hooks.run_post_install, "image", hooks.POST_INSTALL_PHASES),
    Stage("preload", preload.DESCRIPTION, preload.run_stage, "image"),
    Stage("lock", lock.DESCRIPTION, lock.run_stage, "image"),
    Stage("normalize", normalize.DESCRIPTION, normalize.run_stage, "image"),
    Stage("assemble", assemble.DESCRIPTION, assemble.run_stage, "image"),
    Stage("export", export.DESCRIPTION, export.run_stage, "image"),
)
NAMES = [stage.name for stage in STAGES]


def checkpoints() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Checkpoint name -> (the stages it covers, the hook phases they run), in pipeline order."""
    found: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for stage in STAGES:
        names, phases = found.get(stage.checkpoint, ((), ()))
        found[stage.checkpoint] = (names + (stage.name,), phases + stage.hook_phases)
    return found


def lock_stages() -> tuple[Stage, ...]:
    """What `trove-builder lock` runs: up to the lock stage, no image made."""
    return STAGES[: NAMES.index("lock") + 1]


def unknown_file_stages() -> list[str]:
    """Stage names in templates/files.yaml that no stage is called (such a file would never be written)."""
    return sorted({entry["stage"] for entry in file_table()} - set(NAMES))
