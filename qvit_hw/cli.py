"""`qvit-hw`: the command line. Each command is a thin shell over a plain function."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

from .errors import QvitHwError

app = typer.Typer(
    help="Deploy quantum vision transformers on quantum hardware and simulators.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Deploy quantum vision transformers on quantum hardware and simulators."""


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def params() -> None:
    """Print parameter counts of QViT and ViT at the paper's three configurations."""
    from .model import ModelConfig, VisionTransformer, count_parameters

    table = Table(title="Trainable parameters (2 heads, 2 classes)")
    for col in ("image", "patch", "qubits", "QViT", "ViT"):
        table.add_column(col, justify="right")
    for size, n in ((28, 4), (224, 4), (224, 8)):
        counts = [
            count_parameters(VisionTransformer(ModelConfig(model=m, image_size=size, n_qubits=n)))
            for m in ("qvit", "vit")
        ]
        cfg = ModelConfig(image_size=size, n_qubits=n)
        table.add_row(f"{size}x{size}", f"{cfg.patch_size}", str(n), *map(str, counts))
    Console().print(table)


def main() -> None:
    """Entry point that turns our errors into one line and exit status 1."""
    try:
        app()
    except QvitHwError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
