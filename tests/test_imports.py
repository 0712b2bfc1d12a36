"""The package's import structure: no cycles between modules, and jobs/ without SDKs."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import qvit_hw

ROOT = Path(qvit_hw.__file__).parent
HARDWARE_SDKS = ("qiskit_ibm_runtime", "pyquil", "qcs_sdk", "pennylane", "braket", "boto3")


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {"qvit_hw": ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix="qvit_hw."):
        name = info.name
        path = ROOT.joinpath(*name.split(".")[1:])
        out[name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return out


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (functions included), except
    under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    hidden = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from . import x` imports the submodule x; `from .m import f` imports m
            subs = {f"{module}.{a.name}" for a in node.names} & known
            out.update(subs if subs and not node.module else {module} & known)
    out.discard(name)
    return out


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(modules())
    code = f"import importlib\nfor n in {names!r}: importlib.import_module(n)\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_import_graph_has_no_cycle():
    mods = modules()
    graph = {name: imported(name, path, set(mods)) for name, path in mods.items()}
    assert graph["qvit_hw.jobs.runner"] >= {"qvit_hw.jobs.plan", "qvit_hw.jobs.combine"}
    assert "qvit_hw.transpile" in graph["qvit_hw.jobs.runner"]  # lazy imports count too
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join(
                [*path[path.index(nxt) :], nxt]
            )
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_jobs_imports_no_hardware_sdk():
    jobs = sorted(n for n in modules() if n == "qvit_hw.jobs" or n.startswith("qvit_hw.jobs."))
    code = (
        "import importlib, json, sys\n"
        f"for n in {jobs!r}: importlib.import_module(n)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HARDWARE_SDKS!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(jobs) >= 10 and json.loads(done.stdout) == []
