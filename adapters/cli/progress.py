"""Progress of export, import and copy: one bar per kind of record, with its total.

Totals come from where they are cheap to know: the store's counts (export, copy) or the
export file's trailer line (import). Without a total the bar still counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

PLURALS = {
    "agent_type": "agent types",
    "topology": "topologies",
    "execution": "executions",
    "agent_instance": "agent instances",
    "result": "results",
    "message": "messages",
}


def plural(kind: str) -> str:
    return PLURALS.get(kind, kind.replace("_", " ") + "s")


def file_totals(path: Path) -> dict[str, int]:
    """The counts an export's trailer line announces ({} when it has none: the import itself
    then says what is wrong with the file)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            last = handle.read().decode("utf-8", "replace").rstrip("\n").rsplit("\n", 1)[-1]
        trailer = json.loads(last)
    except (OSError, ValueError):
        return {}
    counts = trailer.get("counts") if isinstance(trailer, dict) and trailer.get("kind") == "end" else None
    if not isinstance(counts, dict):
        return {}
    return {str(k): v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}


def progress_display(out: Console, *, disable: bool = False) -> Progress:
    """The command's one kind of progress display: label, bar, done/total; shown only on a
    terminal and gone when it ends."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out,
        transient=True,
        disable=disable or not out.is_terminal,
    )


@contextmanager
def bars(
    out: Console, label: str, totals: dict[str, int] | None = None, *, disable: bool = False
) -> Iterator[Callable[[str, int], None]]:
    """``advance(kind, count)`` moves the bar of ``kind`` ("exporting topologies 3/7")."""
    known = totals or {}
    with progress_display(out, disable=disable) as progress:
        tasks: dict[str, Any] = {}

        def advance(kind: str, count: int) -> None:
            if kind not in tasks:
                tasks[kind] = progress.add_task(f"{label} {plural(kind)}", total=known.get(kind))
            progress.update(tasks[kind], advance=count)

        yield advance
