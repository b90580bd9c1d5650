"""The package's architecture, checked: who may import Airflow, and which package may import which.

The rules are data, :data:`LAYERS`; CONTRIBUTING.md's architecture table mirrors it row for row. The
checker reads every ``.py`` file under ``plugins/cdyb_jxc`` with :mod:`ast` (nothing is imported), collects
the imports at module level and inside functions, including ``importlib.import_module("…")`` with a literal
name, and compares each one with the rule of the package the file belongs to.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "cdyb_jxc"
REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = REPO / "plugins" / PACKAGE
AIRFLOW = "airflow"

# Airflow-free packages; cli (also Airflow-free) is left out: it drives them and no domain package uses it.
DOMAIN = frozenset({"exceptions", "config", "deployment", "safety", "wire", "ledger", "upload", "simulator"})


@dataclass(frozen=True)
class Rule:
    """What one package (or root module) may import.

    :param imports: packages it may import anywhere, ``airflow`` included for the glue.
    :param lazy: packages it may import only inside a function (or under ``if TYPE_CHECKING:``), so that
        importing this package does not import them: it stays cheap, Airflow-free or free of a cycle.
    :param why: the reason, shown in CONTRIBUTING.md.
    """

    imports: frozenset[str]
    lazy: frozenset[str] = frozenset()
    why: str = ""


def _rule(*imports: str, lazy: tuple[str, ...] = (), why: str) -> Rule:
    return Rule(frozenset(imports), frozenset(lazy), why)


# Layer order, lowest first: exceptions < config, safety < wire < ledger < upload. The simulator plays the
# centre and shares only the wire format; cli drives the domain. Glue (hooks < operators, notifications <
# workflows; ui) sits on top and alone may import Airflow. "cdyb_jxc" is the package's own __init__.
LAYERS: dict[str, Rule] = {
    "cdyb_jxc": _rule(why="holds __version__ only"),
    "exceptions": _rule(why="every layer raises these, so they depend on nothing"),
    "config": _rule(
        "exceptions",
        lazy=("wire",),
        why="the one module that reads the environment and resolves a run's ledger, profile and settings; "
        "wire.profile reads $CDYB_JXC_PROFILE through it, so it loads a profile only inside a function",
    ),
    "deployment": _rule(
        "exceptions",
        "config",
        why="reads and checks the deployment file (cdyb_jxc.yaml): one InstitutionSettings each",
    ),
    "safety": _rule("exceptions", why="redaction, text caps, spreadsheet escaping, used by the layers above"),
    "wire": _rule("exceptions", "config", "safety", why="the SPEC's format, profile, client, transport"),
    "ledger": _rule("exceptions", "config", "safety", "wire", why="stores what the wire format produced"),
    "upload": _rule(
        "exceptions", "config", "safety", "wire", "ledger", why="the engine: sources → wire → ledger"
    ),
    "simulator": _rule(
        "exceptions",
        "config",
        "safety",
        "wire",
        why="a stand-in centre: the wire format, not ledger or engine",
    ),
    "cli": _rule(
        "cdyb_jxc",
        *DOMAIN,
        lazy=("hooks",),
        why="the `cdyb-jxc` command; it reads an Airflow connection through the hook only in the subcommand "
        "that needs one, so `cdyb-jxc simulator` and `--help` never load Airflow",
    ),
    "__main__": _rule("cli", why="`python -m cdyb_jxc` runs the cli"),
    "get_provider_info": _rule(
        "cdyb_jxc", AIRFLOW, why="Airflow's providers manager reads it; it may name Airflow types"
    ),
    "hooks": _rule(AIRFLOW, *DOMAIN, why="Airflow connection → domain settings, ledger and uploader"),
    "operators": _rule(AIRFLOW, *DOMAIN, "hooks", why="an Airflow task around the engine, built by the hook"),
    "notifications": _rule(AIRFLOW, *DOMAIN, why="Airflow notifier for rejected rows"),
    "workflows": _rule(
        AIRFLOW, *DOMAIN, "hooks", "operators", "notifications", why="DAG settings, builders, task callables"
    ),
    "ui": _rule(AIRFLOW, *DOMAIN, "hooks", why="the Airflow UI plugin and its monitor pages"),
}

# The packages the issue allows to import Airflow; a change here is a change of the architecture.
GLUE = frozenset({"hooks", "operators", "notifications", "workflows", "ui", "get_provider_info"})

# Imports that break the layer order today, each to be removed by moving the named thing down a layer.
# Keyed by (file relative to the package root, imported module); test_exemptions_are_still_needed fails as
# soon as one is fixed, so the list only shrinks.
EXEMPTIONS: dict[tuple[str, str], str] = {}

AIRFLOW_ADVICE = (
    "What to do: domain code must import and run without Airflow. Keep the Airflow call in a glue package\n"
    "(the hook for connections, workflows/ for task callables, operators/, notifications/, ui/) and pass\n"
    "plain Python values into the domain function. Do not exempt the import; if you need a new glue\n"
    "package, add it to LAYERS and GLUE in tests/test_architecture.py and to CONTRIBUTING.md's table."
)
LAYER_ADVICE = (
    "What to do: a package may import only the packages its LAYERS rule in tests/test_architecture.py\n"
    "names (lower layers). Move the shared code down to the lowest package that needs it, or pass it in as\n"
    "an argument. If the architecture really changes, change LAYERS and CONTRIBUTING.md's table together."
)


@dataclass(frozen=True)
class Import:
    """One import found in a file.

    :param path: the file as shown in a failure, e.g. ``plugins/cdyb_jxc/wire/values.py``.
    :param line: 1-based line number.
    :param module: absolute module name, e.g. ``cdyb_jxc.wire.codec`` or ``airflow.sdk``.
    :param text: the statement as written.
    :param lazy: inside a function, so it runs only when the function is called, or under
        ``if TYPE_CHECKING:``, so it never runs.
    """

    path: str
    line: int
    module: str
    text: str
    lazy: bool


def _module_name(file: Path, package_root: Path) -> str:
    parts = list(file.relative_to(package_root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, file: Path, package_root: Path) -> str:
    if not node.level:
        return node.module or ""
    here = _module_name(file, package_root).split(".")
    package = here if file.name == "__init__.py" else here[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _import_module_literal(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


class _Collector(ast.NodeVisitor):
    def __init__(self, file: Path, package_root: Path, source: str) -> None:
        self.file, self.package_root, self.source = file, package_root, source
        self.shown = str(file.relative_to(package_root.parent.parent))
        self.depth = 0  # functions and TYPE_CHECKING blocks around the node being visited
        self.found: list[Import] = []

    def _add(self, node: ast.stmt | ast.expr, module: str) -> None:
        text = ast.get_source_segment(self.source, node) or module
        self.found.append(Import(self.shown, node.lineno, module, " ".join(text.split()), self.depth > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.attr if isinstance(test, ast.Attribute) else test.id if isinstance(test, ast.Name) else ""
        if name != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.depth += 1
        for child in node.body:
            self.visit(child)
        self.depth -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _resolve(node, self.file, self.package_root)
        if module == PACKAGE:  # `from cdyb_jxc import wire` imports the subpackage wire
            for alias in node.names:
                self._add(node, f"{PACKAGE}.{alias.name}")
        else:
            self._add(node, module)

    def visit_Call(self, node: ast.Call) -> None:
        module = _import_module_literal(node)
        if module is not None:
            self._add(node, module)
        self.generic_visit(node)


def collect_imports(file: Path, package_root: Path) -> list[Import]:
    """Every import in ``file``, module level and inside functions, in source order."""
    source = file.read_text(encoding="utf-8")
    collector = _Collector(file, package_root, source)
    collector.visit(ast.parse(source, filename=str(file)))
    return sorted(collector.found, key=lambda found: found.line)


def _package_of(file: Path, package_root: Path) -> str:
    rel = file.relative_to(package_root)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return PACKAGE if rel.stem == "__init__" else rel.stem


def _target(module: str, package_root: Path) -> str | None:
    """The package an import lands in: ``airflow``, one of ours, or None for anything else."""
    parts = module.split(".")
    if parts[0] == AIRFLOW:
        return AIRFLOW
    if parts[0] != PACKAGE:
        return None
    if len(parts) > 1 and ((package_root / parts[1]).is_dir() or (package_root / f"{parts[1]}.py").is_file()):
        return parts[1]
    return PACKAGE


def _files(package_root: Path) -> Iterator[Path]:
    return iter(sorted(package_root.rglob("*.py")))


def airflow_violations(package_root: Path = PACKAGE_ROOT, glue: frozenset[str] = GLUE) -> list[str]:
    """``file:line: statement`` for every Airflow import outside the glue packages."""
    found = []
    for file in _files(package_root):
        if _package_of(file, package_root) in glue:
            continue
        found += [
            f"{imp.path}:{imp.line}: {imp.text}"
            for imp in collect_imports(file, package_root)
            if _target(imp.module, package_root) == AIRFLOW
        ]
    return found


def layer_violations(
    package_root: Path = PACKAGE_ROOT,
    layers: dict[str, Rule] = LAYERS,
    exemptions: dict[tuple[str, str], str] = EXEMPTIONS,
) -> list[str]:
    """``file:line: statement — reason`` for every import between our packages that its rule forbids."""
    found = []
    for file in _files(package_root):
        source = _package_of(file, package_root)
        rule = layers.get(source)
        rel = file.relative_to(package_root).as_posix()
        if rule is None:
            shown = file.relative_to(package_root.parent.parent)
            found.append(f"{shown}: package {source!r} has no rule in LAYERS")
            continue
        for imp in collect_imports(file, package_root):
            target = _target(imp.module, package_root)
            if target in {None, AIRFLOW, source} or target in rule.imports or (rel, imp.module) in exemptions:
                continue
            reason = (
                f"{source} may import {target} only inside a function (or under TYPE_CHECKING)"
                if target in rule.lazy
                else f"{source} may not import {target}"
            )
            if target not in rule.lazy or not imp.lazy:
                found.append(f"{imp.path}:{imp.line}: {imp.text} — {reason}")
    return found


def test_airflow_is_imported_only_by_the_glue_packages() -> None:
    found = airflow_violations()
    assert not found, (
        "Airflow imported outside hooks, operators, notifications, workflows, ui, get_provider_info:\n  "
        + "\n  ".join(found)
        + "\n"
        + AIRFLOW_ADVICE
    )


def test_packages_import_only_the_layers_below_them() -> None:
    found = layer_violations()
    assert not found, "Imports that break the layer order:\n  " + "\n  ".join(found) + "\n" + LAYER_ADVICE


def test_the_rules_let_exactly_the_glue_import_airflow() -> None:
    assert {name for name, rule in LAYERS.items() if AIRFLOW in rule.imports | rule.lazy} == GLUE
    assert {"hooks", "operators", "notifications", "workflows", "ui", "get_provider_info"} == GLUE


def test_domain_packages_import_no_glue_and_safety_only_exceptions() -> None:
    glue_and_cli = GLUE | {"cli"}
    for name in DOMAIN:
        assert not (LAYERS[name].imports | LAYERS[name].lazy) & glue_and_cli, name
    assert LAYERS["safety"].imports == {"exceptions"}
    assert LAYERS["cli"].lazy == {"hooks"}
    assert "hooks" not in LAYERS["cli"].imports


def test_every_package_in_the_tree_has_a_rule() -> None:
    present = {_package_of(file, PACKAGE_ROOT) for file in _files(PACKAGE_ROOT)}
    assert present == set(LAYERS), (
        f"packages without a rule: {sorted(present - set(LAYERS))}; rules without a package: "
        f"{sorted(set(LAYERS) - present)}. Add or remove the entry in LAYERS (tests/test_architecture.py) "
        "and in CONTRIBUTING.md's architecture table."
    )


def test_exemptions_are_still_needed() -> None:
    imported = {
        (file.relative_to(PACKAGE_ROOT).as_posix(), imp.module)
        for file in _files(PACKAGE_ROOT)
        for imp in collect_imports(file, PACKAGE_ROOT)
    }
    stale = sorted(set(EXEMPTIONS) - imported)
    assert not stale, f"these imports are gone, delete their entries from EXEMPTIONS: {stale}"


# The checker itself must catch what it is there for: a tree that breaks the rules on purpose.


def _write(root: Path, files: dict[str, str]) -> Path:
    package_root = root / "plugins" / PACKAGE
    for rel, source in files.items():
        path = package_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return package_root


@pytest.fixture
def broken_tree(tmp_path: Path) -> Path:
    return _write(
        tmp_path,
        {
            "__init__.py": '__version__ = "0"\n',
            "exceptions.py": "",
            "wire/__init__.py": "",
            "wire/values.py": """\
                import json
                import airflow
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from airflow.sdk import Context

                def later():
                    from airflow.sdk import BaseHook
                    import importlib
                    return importlib.import_module("airflow.models"), BaseHook, json
                """,
            "safety/__init__.py": "",
            "safety/redaction.py": "from ..wire import values\nfrom cdyb_jxc import exceptions\n",
            "cli/__init__.py": """\
                from typing import TYPE_CHECKING
                from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook

                if TYPE_CHECKING:
                    from cdyb_jxc.hooks.cdyb_jxc import Context

                def main():
                    from cdyb_jxc.hooks import cdyb_jxc
                    return cdyb_jxc, CdybJxcHook
                """,
            "hooks/__init__.py": "",
            "hooks/cdyb_jxc.py": "from airflow.sdk import BaseHook\nfrom cdyb_jxc.wire import values\n",
            "deploy/__init__.py": "",
        },
    )


def test_checker_reports_each_airflow_import_in_a_domain_package(broken_tree: Path) -> None:
    assert airflow_violations(broken_tree) == [
        "plugins/cdyb_jxc/wire/values.py:2: import airflow",
        "plugins/cdyb_jxc/wire/values.py:6: from airflow.sdk import Context",
        "plugins/cdyb_jxc/wire/values.py:9: from airflow.sdk import BaseHook",
        'plugins/cdyb_jxc/wire/values.py:11: importlib.import_module("airflow.models")',
    ]


def test_checker_reports_imports_against_the_layer_order(broken_tree: Path) -> None:
    assert layer_violations(broken_tree, exemptions={}) == [
        (
            "plugins/cdyb_jxc/cli/__init__.py:2: from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook"
            " — cli may import hooks only inside a function (or under TYPE_CHECKING)"
        ),
        "plugins/cdyb_jxc/deploy/__init__.py: package 'deploy' has no rule in LAYERS",
        "plugins/cdyb_jxc/safety/redaction.py:1: from ..wire import values — safety may not import wire",
    ]


def test_checker_passes_a_tree_that_keeps_the_rules(tmp_path: Path) -> None:
    package_root = _write(
        tmp_path,
        {
            "safety/redaction.py": "from cdyb_jxc.exceptions import CodecError\n",
            "exceptions.py": "class CodecError(Exception): ...\n",
            "wire/codec.py": "from cdyb_jxc.safety import redaction\nfrom . import values\n",
            "hooks/cdyb_jxc.py": "import airflow.sdk\nfrom cdyb_jxc.wire import codec\n",
            "cli/__init__.py": "def main():\n    from cdyb_jxc.hooks import cdyb_jxc\n    return cdyb_jxc\n",
        },
    )
    assert airflow_violations(package_root) == []
    assert layer_violations(package_root) == []
