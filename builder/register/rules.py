"""The configuration parameters a datastore version accepts: Trove's validation-rules.json.

The file ships in the trove package (trove/templates/<manager>/validation-rules.json); operators
without trove installed pass it with --rules. Read as `trove-manage db_load_datastore_config_parameters`
reads it: the list under "configuration-parameters", each with name, type, restart_required, min, max.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UsageError

# Trove's management API takes data_type "integer" or "string" only (trove/common/apischema.py) and an
# integer only with both min_size and max_size (trove/extensions/mgmt/configuration/service.py), while
# trove-manage writes every rule straight into the database: booleans, floats, open-ended integers.
API_TYPES = ("integer", "string")


@dataclass(frozen=True)
class Parameter:
    """One configuration parameter as Trove stores it (min/max only for numbers)."""

    name: str
    data_type: str
    restart_required: bool
    min_size: str | None = None
    max_size: str | None = None

    @property
    def api_loadable(self) -> bool:
        if self.data_type == "integer":
            return self.min_size is not None and self.max_size is not None
        return self.data_type in API_TYPES


def installed_rules(manager: str) -> Path | None:
    """validation-rules.json of `manager` in the installed trove package, if trove is installed."""
    spec = importlib.util.find_spec("trove")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "templates" / manager / "validation-rules.json"
        if path.is_file():
            return path
    return None


def find_rules(manager: str, given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise UsageError(f"no rules file at {given}")
        return given
    found = installed_rules(manager)
    if found is None:
        raise UsageError(f"no validation-rules.json for datastore manager '{manager}': pass --rules PATH "
                         f"(trove/templates/{manager}/validation-rules.json in the trove source)")
    return found


def _bound(value) -> str | None:
    return None if value is None else str(value)


def load_rules(path: Path) -> list[Parameter]:
    """The parameters in `path`, or a UsageError naming what is wrong with the file."""
    try:
        data = json.loads(path.read_text())
        entries = data["configuration-parameters"]
        params = [Parameter(name=e["name"], data_type=e["type"], restart_required=bool(e["restart_required"]),
                            min_size=_bound(e.get("min")), max_size=_bound(e.get("max")))
                  for e in entries]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read rules file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"rules file {path} is not JSON: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise UsageError(f"rules file {path} is not a validation-rules.json (missing {exc})") from None
    if not params:
        raise UsageError(f"rules file {path} lists no configuration parameters")
    return params
