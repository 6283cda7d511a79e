"""Build progress: the pipeline emits events; whoever started the build renders them.

Inside the builder container the pipeline writes each event as one JSON line with a marker, and the
host CLI renders it: a live spinner with elapsed time per stage on a terminal (rich), plain lines in
CI logs, and with --json one machine-readable summary at the end. With --runtime none the same
renderer runs in-process. Keeping the wire format to JSON lines means stdout of a container stays
readable even without the renderer.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

MARKER = "::trove-builder-event::"
EVENTS_ENV = "TROVE_BUILDER_EVENTS"


class Reporter:
    """Renders events for people (rich on a terminal, plain lines otherwise) and keeps the summary."""

    def __init__(self, stream: TextIO | None = None, fancy: bool | None = None):
        self.stream = stream or sys.stdout
        if fancy is None:
            fancy = self.stream.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"
        self.fancy = fancy
        self.summary: dict[str, Any] = {"stages": [], "cached_checkpoint": None}
        self._live: Any = None  # a rich Progress while a spinner runs

    # -- rendering helpers ------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def _start_spinner(self, label: str) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                              console=Console(file=self.stream), transient=True)
        self._live.start()
        self._live.add_task(label, total=None)

    def _stop_spinner(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- events -----------------------------------------------------------------------------------
    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "build-start":
            self.summary.update({k: v for k, v in event.items() if k != "event"})
            self._print(f"trove-builder: {event['os']} {event['release']}, {event['mode']} mode, "
                        f"trove {event['agent_version']}, {event['size_gb']} GB -> {event['output']}")
        elif kind == "cache-hit":
            self.summary["cached_checkpoint"] = event["checkpoint"]
            self._print(f"stage cache: reusing '{event['checkpoint']}' ({event['entry']}); "
                        f"{event['skipped']} of {event['total']} stages skipped")
        elif kind == "stage-cached":
            self.summary["stages"].append({"name": event["name"], "seconds": 0.0, "cached": True})
            self._print(f"[{event['index']}/{event['total']}] {event['name']}: cached")
        elif kind == "stage-start":
            label = f"[{event['index']}/{event['total']}] {event['name']}: {event['description']}"
            if self.fancy:
                self._start_spinner(label)
            else:
                self._print(label + " ...")
        elif kind == "stage-done":
            self._stop_spinner()
            self.summary["stages"].append({"name": event["name"], "seconds": event["seconds"], "cached": False})
            if self.fancy:
                self._print(f"[{event['index']}/{event['total']}] {event['name']} done in {event['seconds']:.1f}s")
            else:
                self._print(f"      {event['name']} done in {event['seconds']:.1f}s")
        elif kind == "stage-failed":
            self._stop_spinner()
        elif kind == "build-done":
            self._stop_spinner()
            self.summary.update({k: v for k, v in event.items() if k != "event"})
            self._table()
        elif kind == "message":
            self._print(event["text"])

    def _table(self) -> None:
        stages = self.summary["stages"]
        cache_seconds = self.summary.get("cache_seconds", 0.0)
        total = sum(s["seconds"] for s in stages) + cache_seconds
        rows = [(s["name"], "cached" if s["cached"] else f"{s['seconds']:.1f}s") for s in stages]
        if cache_seconds:
            rows.append(("(cache)", f"{cache_seconds:.1f}s"))
        rows.append(("total", f"{total:.1f}s"))
        if self.fancy:
            from rich.console import Console
            from rich.table import Table

            table = Table(title="stage timings", show_header=True, header_style="bold")
            table.add_column("stage")
            table.add_column("time", justify="right")
            for name, value in rows:
                table.add_row(name, value)
            Console(file=self.stream).print(table)
        else:
            self._print("stage timings:")
            for name, value in rows:
                self._print(f"  {name:<10} {value:>8}")
        if self.summary.get("sha256"):  # `lock` makes no image
            self._print(f"image: {self.summary.get('output')} ({self.summary.get('bytes', 0) / 2**20:.0f} MiB, "
                        f"sha256 {self.summary.get('sha256')})")

    def close(self) -> None:
        self._stop_spinner()


class Emitter:
    """The pipeline's side: send an event to the host (JSON line) or render it here."""

    def __init__(self, reporter: Reporter | None = None):
        self.wire = os.environ.get(EVENTS_ENV) == "1"
        self.reporter = None if self.wire else (reporter or Reporter())

    def __call__(self, kind: str, **fields: Any) -> None:
        event = {"event": kind, **fields}
        if self.wire:
            print(MARKER + json.dumps(event, default=str), flush=True)
        elif self.reporter is not None:
            self.reporter.handle(event)

    def message(self, text: str) -> None:
        self("message", text=text)


def parse_line(line: str) -> dict[str, Any] | None:
    """The event on a line of container output, or None for an ordinary line."""
    if not line.startswith(MARKER):
        return None
    try:
        return json.loads(line[len(MARKER):])
    except ValueError:
        return None
