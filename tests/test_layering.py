"""The package's layering, read from its source (``ast``): the floors ``layers -> models -> convert
-> train / cli`` import only downwards, no module imports itself through others, and no code
outside ``models/`` and ``convert/`` branches on a model family's name.

Every ``import`` counts, also inside functions (a lazy import still ties two rooms together);
imports under ``if TYPE_CHECKING:`` do not (they never run). Package ``__init__`` modules are
faces that re-export their rooms: they are not nodes of the cycle check, but what they import
counts for the floors.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

from flowsr.models import FAMILIES

ROOT = Path(__file__).resolve().parent.parent

#: room -> rooms it must never import. The floors (docs/architecture.md): layers -> models ->
#: convert -> train / cli; the library never imports its test helpers, which test layers and
#: models only; data, metrics and fileio import no model code.
NEVER: dict[str, set[str]] = {
    "layers": {"models", "convert", "train", "cli", "testing"},
    "models": {"convert", "train", "cli", "testing"},
    "convert": {"train", "cli", "testing"},
    "testing": {"convert", "train", "cli"},
    "data": {"layers", "models", "convert", "train", "cli", "testing"},
    "metrics": {"layers", "models", "convert", "train", "cli", "testing"},
    "fileio": {"layers", "models", "convert", "train", "cli", "testing", "data", "metrics"},
}
#: rooms that may name model families: they define them.
FAMILY_ROOMS = {"models", "convert"}


# -- reading the package -------------------------------------------------------------------------------


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the ``flowsr`` package under ``root``."""
    found = {}
    for path in sorted((root / "flowsr").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        stack.extend(children)


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``module`` imports (``from pkg import sub`` resolves to ``pkg.sub``)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                base = ".".join(parts[: len(parts) - node.level + is_package] + ([node.module] if node.module else []))
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name of ``base``
        for name in names:
            target = _resolve(name, known) if name.split(".")[0] == "flowsr" else None
            if target and target != module:
                targets.add(target)
    return targets


def import_graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {m: imports_of(m, p, known) for m, p in known.items()}


def room(module: str) -> str:
    """``flowsr.models.hcflow`` -> ``models``; ``flowsr.cli`` -> ``cli``; ``flowsr`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# -- the rules -------------------------------------------------------------------------------------------


def cycles(graph: dict[str, set[str]], faces: set[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (faces left out), by Tarjan's algorithm."""
    nodes = {m: sorted(t for t in ts if t not in faces) for m, ts in graph.items() if m not in faces}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in nodes.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(found)


def forbidden_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} imports {b}" for a, targets in graph.items() for b in targets if room(b) in NEVER.get(room(a), ())
    )


def _strings(node: ast.expr) -> list[str]:
    """The string constants of a literal (a constant, or a tuple / list / set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    return []


def _names_a_family(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "family") or (
        isinstance(node, ast.Attribute) and node.attr == "family"
    )


def family_branches(path: Path, names: set[str]) -> list[str]:
    """Places in ``path`` that decide by a family's name: comparisons with a family name (or of a
    ``family`` against string literals), tables keyed by family names, ``match`` cases on them.
    Registry look-ups (``get_family(name)``, ``FAMILIES[name]``) are not branches."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        hit = False
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literals = [s for op in operands for s in _strings(op)]
            hit = bool(names & set(literals)) or (any(map(_names_a_family, operands)) and bool(literals))
        elif isinstance(node, ast.Dict):
            # a table over families has several of them as keys (one key can be a coincidence: the
            # IRN family names its noise draw "irn")
            hit = len(names & {s for key in node.keys if key is not None for s in _strings(key)}) >= 2
        elif isinstance(node, ast.MatchValue):
            hit = bool(names & set(_strings(node.value)))
        if hit:
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


# -- the package passes ------------------------------------------------------------------------------------


def test_no_import_cycles():
    known = modules(ROOT)
    faces = {m for m, p in known.items() if p.name == "__init__.py"}
    assert cycles(import_graph(ROOT), faces) == []


def test_floors_import_only_downwards():
    assert forbidden_imports(import_graph(ROOT)) == []


def test_no_family_name_branches_outside_models_and_convert():
    names = set(FAMILIES)
    assert len(names) >= 4  # read from the registry, so new families are covered too
    found = [
        place
        for module, path in modules(ROOT).items()
        if room(module) not in FAMILY_ROOMS
        for place in family_branches(path, names)
    ]
    assert found == [], "use the family interface (task, registry look-ups), not family names:\n" + "\n".join(found)


# -- the checks catch what they should -----------------------------------------------------------------------


@pytest.fixture
def fake_package(tmp_path: Path) -> Path:
    files = {
        "flowsr/__init__.py": "",
        "flowsr/layers/__init__.py": "from flowsr.layers.a import A\n",
        "flowsr/layers/a.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from flowsr.train import loop  # typing only: not an import
            class A:
                def build(self):
                    from flowsr.models.b import B  # a lazy import still counts
                    return B
        """,
        "flowsr/models/__init__.py": "",
        "flowsr/models/b.py": """
            from ..layers import a
            B = a
            TABLE = {"irn": 1, "srflow": 2}  # allowed in models/
        """,
        "flowsr/train/__init__.py": "",
        "flowsr/train/loop.py": """
            from flowsr import cli
            def run(model, family):
                if model.family == "irn" or family in ("sr", "rescaling"):
                    return 1
                scales = {"srflow": 4, "irn": 2}
                streams = {"irn": 5, "dequant": 1}  # one family-like key: not a table over families
                match family:
                    case "hcflow_sr":
                        return 2
                return model.task == "sr"
        """,
        "flowsr/cli.py": "import flowsr.train.loop\nfrom flowsr.models import FAMILIES\nCLS = FAMILIES['irn']\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_layering_checks_catch_violations(fake_package: Path):
    graph = import_graph(fake_package)
    assert graph["flowsr.layers.a"] == {"flowsr.models.b"}  # the TYPE_CHECKING import does not count
    assert graph["flowsr.models.b"] == {"flowsr.layers.a"}  # a relative import of a submodule
    faces = {"flowsr", "flowsr.layers", "flowsr.models", "flowsr.train"}
    assert cycles(graph, faces) == [
        ["flowsr.cli", "flowsr.train.loop"],
        ["flowsr.layers.a", "flowsr.models.b"],
    ]
    assert forbidden_imports(graph) == ["flowsr.layers.a imports flowsr.models.b"]
    branches = family_branches(fake_package / "flowsr/train/loop.py", {"irn", "srflow", "hcflow_sr"})
    # line 4: == "irn" and `family in (...)`; 6: {"srflow": ..., "irn": ...}; 9: case "hcflow_sr";
    # not the noise-stream table (7) nor `model.task == "sr"`
    assert sorted(int(b.split(":")[1]) for b in branches) == [4, 4, 6, 9]
    assert family_branches(fake_package / "flowsr/cli.py", {"irn"}) == []  # a registry look-up
    assert family_branches(fake_package / "flowsr/models/b.py", {"irn", "srflow"})  # found; models/ may


def test_architecture_md_describes_every_module():
    """docs/architecture.md has a line for every module (a new module needs one: `room/module.py`)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [
        rel
        for path in modules(ROOT).values()
        if f"`{(rel := path.relative_to(ROOT / 'flowsr').as_posix())}`" not in text
    ]
    assert missing == [], f"modules without a line in docs/architecture.md: {missing}"
