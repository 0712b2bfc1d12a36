"""`make bench`: run every benchmark section side by side and write bench/RESULTS.md.

Each section module exposes ``run(console) -> str`` returning Markdown. Ratios, not
absolute times, are the claims: every ratio compares two things measured in this run.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

SECTIONS = [
    "bench.train_step",
    "bench.train_memory",
    "bench.transpile_bind",
    "bench.scheduler",
    "bench.noisy",
    "bench.mitigation",
]
OUT = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.platform()}, {cpu}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )


def main(argv: list[str]) -> None:
    console = Console()
    wanted = argv or SECTIONS
    parts = [
        "# qvit-hw benchmarks",
        "",
        f"Written by `make bench` on {time.strftime('%Y-%m-%d')}; machine: {machine()}.",
        "Times are medians of interleaved repeats; the claims are the ratios.",
        "",
    ]
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            console.print(f"[yellow]skip {name}: not written yet[/]")
            continue
        console.rule(name)
        parts.append(module.run(console))
    OUT.write_text("\n".join(parts) + "\n")
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
