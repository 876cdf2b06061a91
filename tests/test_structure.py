"""The layout holds: no import cycles, no stage importing another, no imports hidden in
functions, one set of defaults, and dvc.yaml depending on exactly the code each stage runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from ganlab.params import Params, load_params
from tests.conftest import STAGES, committed_copy

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ganlab", "stages")
# Imported inside functions on purpose: each costs seconds or is needed by one code path only.
LAZY_OK = {"mlflow", "matplotlib", "torchmetrics"}
# The `gan` dispatcher imports the module of the one command it runs, inside that command: each DVC
# stage is a process of its own, and importing every stage and the benchmark cost each 2.3 s.
DISPATCHER, DISPATCHED = "stages/cli.py", ("stages.", "ganlab.bench")
# Stage modules and the `gan` subcommand that runs each; cli.py is the dispatcher, not a stage.
STAGE_COMMANDS = {stage.replace("-", "_"): stage for stage in STAGES}


def module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    return files


def imports(path: Path, modules: dict[str, Path]) -> tuple[set[str], list[tuple[int, str]]]:
    """(project modules imported at module level, (line, module) of every import inside a function)."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module:
            return [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        return []

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in tree.body:
        for name in names(node):
            if (found := resolve(name)) is not None:
                top.add(found)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                nested += [(node.lineno, name) for name in names(node)]
    top.discard(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return {m for m in top if m not in PACKAGES}, nested


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports(path, modules)[0] for name, path in modules.items()}


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return seen


def test_no_import_cycles(graph):
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(dep) :] + [dep]) if dep in path else dep)
            if dep not in state:
                visit(dep, path + [dep])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_training_and_metrics_do_not_depend_on_each_other(graph):
    """Both build on ganlab.nets; the hooks (ganlab.hooks), which need both, sit outside either,
    and the loop takes them as an argument. Not even a path through a third module is allowed."""
    for a, b in (("ganlab.training", "ganlab.metrics"), ("ganlab.metrics", "ganlab.training")):
        for m in (m for m in graph if m.startswith(a)):
            reached = sorted(d for d in closure(graph, m) if d.startswith(b))
            assert not reached, f"{m} reaches {reached}"


def test_no_stage_imports_another_stage(graph):
    for stage in STAGE_COMMANDS:
        others = {m for m in graph[f"stages.{stage}"] if m.startswith("stages.")}
        assert not others, f"stages.{stage} imports {others}"
    assert not any(m.startswith("stages") for name, deps in graph.items() if name.startswith("ganlab") for m in deps)


def test_nothing_is_imported_inside_a_function_but_optional_heavy_dependencies():
    modules = module_files()
    hidden = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules.values()
        for line, name in imports(path, modules)[1]
        if name.split(".")[0] not in LAZY_OK and not (path == ROOT / DISPATCHER and name.startswith(DISPATCHED))
    ]
    assert not hidden, "\n".join(hidden)


def test_params_yaml_and_the_typed_defaults_agree(tmp_path):
    assert load_params(committed_copy("params.yaml", tmp_path)) == Params()


def _empty(path: Path) -> bool:
    """A package marker with nothing but a docstring: no code a stage could depend on."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_dvc_stages_depend_on_every_module_they_import(graph):
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    modules = module_files()
    assert {s["cmd"] for s in stages.values()} == {f"gan {c}" for c in STAGE_COMMANDS.values()}
    assert set(STAGE_COMMANDS) == {p.stem for p in (ROOT / "stages").glob("*.py")} - {"__init__", "cli"}
    for module, command in STAGE_COMMANDS.items():
        deps = [d for d in stages[command]["deps"]]
        needed = sorted(m for m in closure(graph, f"stages.{module}") if m not in PACKAGES and not _empty(modules[m]))
        missing = [modules[m].relative_to(ROOT).as_posix() for m in needed if not _covered(modules[m], deps)]
        assert not missing, f"dvc.yaml stage {command} misses deps: {missing}"
        extra = [
            d
            for d in deps
            if d.endswith(".py") or d in PACKAGES or d.startswith(("ganlab/", "stages/"))
            if not any(_covered(modules[m], [d]) for m in needed)
        ]
        assert not extra, f"dvc.yaml stage {command} depends on code it does not run: {extra}"


def test_params_domains_match_what_the_code_supports():
    from typing import get_args

    from ganlab.nets import archs
    from ganlab.nets.dcgan import SUPPORTED_SIZES
    from ganlab.nets.factory import DISCRIMINATORS
    from ganlab.params import ARCHS, IMAGE_SIZES, LOSS_NAMES, ModelParams, TrainParams
    from ganlab.training.best import DIRECTIONS
    from ganlab.training.loss import LOSSES

    assert IMAGE_SIZES == SUPPORTED_SIZES
    assert set(get_args(TrainParams.model_fields["best_metric"].annotation)) == set(DIRECTIONS)
    assert ARCHS == tuple(archs.ARCHS) and LOSS_NAMES == tuple(LOSSES)
    assert set(get_args(ModelParams.model_fields["discriminator"].annotation)) == set(DISCRIMINATORS)


def test_the_training_checkpoints_keys_are_known_to_one_module():
    """ganlab/io/run_checkpoint.py says what a checkpoint holds; everyone else asks it. Reading one
    of its keys anywhere else in the library (``x["key"]`` or ``x.get("key")``) fails here. Keys
    that also name other things (``model.discriminator``, run.json's ``fingerprint``, a history
    row's ``kimg``) are left out."""
    keys = {
        "generator_eval",
        "generator_best",
        "opt_g",
        "opt_d",
        "ema",
        "augment_p",
        "rng",
        "evals",
        "best_value",
        "best_kimg",
        "checkpoints",
        "complete",
        "replica_digests",
        "history",
    }

    def key(node: ast.AST) -> str | None:
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return node.slice.value
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            return getattr(node.args[0], "value", None)
        return None

    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {key(node)!r}"
        for name, path in module_files().items()
        if name != "ganlab.io.run_checkpoint"
        for node in ast.walk(ast.parse(path.read_text()))
        if key(node) in keys
    ]
    assert not found, "\n".join(found)


def hook_writes_to_the_run(source: str) -> list[str]:
    """Assignments and in-place calls whose target is the run or a part of it, also through a local
    name bound to one (``p = run.progress; p.evals.append(...)``)."""
    tree = ast.parse(source)
    aliases = {"run"}
    for node in ast.walk(tree):  # names bound to a part of the run
        if isinstance(node, ast.Assign):
            pairs = []
            for t in node.targets:
                if isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs += zip(t.elts, node.value.elts)
                else:
                    pairs.append((t, node.value))
            for t, v in pairs:
                if isinstance(t, ast.Name) and ast.unparse(v).startswith("run."):
                    aliases.add(t.id)

    def rooted(t: ast.AST) -> bool:
        while isinstance(t, (ast.Attribute, ast.Subscript)):
            t = t.value
            if isinstance(t, ast.Name) and t.id in aliases:
                return True
        return False

    writes = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in {"append", "extend", "update", "pop", "clear", "insert", "setdefault"}:
                targets = [node.func]
        writes += [f"line {node.lineno}: {ast.unparse(node)[:80]}" for t in targets if rooted(t)]
    return writes


def test_no_hook_writes_to_the_run_or_its_progress():
    """Hooks see the run read-only: what they produce goes back as a return value or through
    ``run.reports`` (training/events.py), never as an attribute another hook or the loop reads."""
    from ganlab.training.events import Run

    assert Run.__dataclass_params__.frozen
    assert hook_writes_to_the_run((ROOT / "ganlab" / "hooks.py").read_text()) == []
    before = "p = run.progress\np.checkpoints.append(1)\nrun.tracker = 2\nq, t = run.progress, 3\nq.best_kimg = 4\n"
    assert len(hook_writes_to_the_run(before)) == 3  # the writes the hooks made before this contract


def _decides_a_start(tree: ast.AST) -> list[int]:
    """Lines that build a ``Start`` or compare a checkpoint's fingerprint: the two ways to decide
    what a `gan train` is (fresh, resume, extend, close, done)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Start":
            lines.append(node.lineno)
        if isinstance(node, ast.Compare) and any(_is_fingerprint(side) for side in [node.left, *node.comparators]):
            lines.append(node.lineno)
    return lines


def _is_fingerprint(node: ast.AST) -> bool:
    """``c.fingerprint``, or ``fingerprint(state)`` as the old loop read it from a checkpoint."""
    if isinstance(node, ast.Attribute):
        return node.attr == "fingerprint"
    return isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "fingerprint"


def test_only_the_session_decides_what_a_start_is():
    """Fresh, resumed, extended, closed or done is decided in training/session.py alone; the loop and
    the hooks read its answer (``Run.start``). Spread over four modules, the decision let a repeated
    `gan train --extend` retrain from zero."""
    deciders = {
        name: lines for name, path in module_files().items() if (lines := _decides_a_start(ast.parse(path.read_text())))
    }
    assert set(deciders) == {"ganlab.training.session"}, deciders
