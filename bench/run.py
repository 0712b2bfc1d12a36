"""`make bench`: run every benchmark section side by side and write bench/RESULTS.md.

Each section module exposes ``run(console) -> str`` returning Markdown. Ratios, not
absolute times, are the claims: every ratio compares two things measured in one section's
run. ``python -m bench.run bench.adaptive`` runs only the sections named: each section's
Markdown is kept in ``bench/results/<section>.md`` (with the date and machine it was
measured on), and RESULTS.md is put together from every section's latest file.
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
    "bench.adaptive",
    "bench.fourier",
    "bench.zne",
]
OUT = Path(__file__).with_name("RESULTS.md")
PARTS = Path(__file__).with_name("results")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.platform()}, {cpu}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )


def main(argv: list[str]) -> None:
    console = Console()
    wanted = [] if argv == ["--assemble"] else argv or SECTIONS  # --assemble: only RESULTS.md
    PARTS.mkdir(exist_ok=True)
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            console.print(f"[yellow]skip {name}: not written yet[/]")
            continue
        console.rule(name)
        stamp = f"*Measured on {time.strftime('%Y-%m-%d')}; machine: {machine()}.*"
        (PARTS / f"{name}.md").write_text(f"{module.run(console).rstrip()}\n\n{stamp}\n")
    parts = [
        "# qvit-hw benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run [SECTION ...]` re-measures some); each "
        "section says when and where it was measured. Times are medians of interleaved "
        "repeats; the claims are the ratios.",
        "",
    ]
    parts += [(PARTS / f"{n}.md").read_text() for n in SECTIONS if (PARTS / f"{n}.md").is_file()]
    OUT.write_text("\n".join(parts))
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
