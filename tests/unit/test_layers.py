"""The import contract (docs/architecture.md, "Layers"): who may import whom, read from the source.

* ``router`` is the shared core: it imports no process kind. Only ``router.cli`` (the root
  command, which wires each kind's ``register``) and ``router.__main__`` may.
* A process kind is each package under ``producers/``, ``consumers/``, ``services/`` and ``tools/``
  (found on disk, so a new kind is covered the day it lands); kinds do not import each other.
* Shipped code (router, producers, consumers, services, tools) imports no ``tests``, ``support`` or
  ``bench``; production code (all of it but ``tools``) imports no dev-only ``tools.dev.embedded``.
* ``support`` (shared by tests and bench) and ``bench`` import no ``tests``.

Every ``import`` counts, wherever it is written (module top, function body, ``TYPE_CHECKING``), and
so does ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIND_HOMES = ("producers", "consumers", "services", "tools")
SHIPPED = ("router", *KIND_HOMES)
NOT_SHIPPED = ("tests", "support", "bench")
COMPOSITION_ROOT = {"router.cli", "router.__main__"}
DEV_ONLY = "tools.dev.embedded"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of everything ``path`` imports; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:  # `from producers import webhooks` imports producers.webhooks
                yield node.lineno, f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) in ("import_module",
                                                                                          "__import__")):
            yield node.lineno, node.args[0].value


def kind_of(module: str) -> str | None:
    """``producers.webhooks.cli`` → ``producers.webhooks``; None outside the kinds' homes."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in KIND_HOMES and len(parts) > 1 else None


@functools.cache
def kinds() -> tuple[str, ...]:
    return tuple(sorted(f"{home}.{d.name}" for home in KIND_HOMES if (ROOT / home).is_dir()
                  for d in (ROOT / home).iterdir() if (d / "__init__.py").is_file()))


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def broken_rules(importer: str, imported: str) -> list[str]:
    """The rules ``importer`` breaks by importing ``imported``, as sentences."""
    top, own_kind, their_kind = importer.split(".", maxsplit=1)[0], kind_of(importer), kind_of(imported)
    broken = []
    if top == "router" and their_kind and importer not in COMPOSITION_ROOT:
        broken.append("the core (router) imports no process kind; move what both need into router/")
    if own_kind and their_kind and own_kind != their_kind and their_kind in kinds():
        broken.append(f"process kinds do not import each other ({own_kind} → {their_kind}); "
                      "move what both need into router/")
    if top in SHIPPED and imported.split(".", maxsplit=1)[0] in NOT_SHIPPED:
        broken.append("shipped code imports no tests, support or bench")
    if top in SHIPPED and top != "tools" and within(imported, DEV_ONLY):
        broken.append(f"production code does not import the dev-only {DEV_ONLY}; shared helpers go to router/")
    if top in ("support", "bench") and within(imported, "tests"):
        broken.append(f"{top} does not import tests; move what both use into support/")
    return broken


def violations() -> list[str]:
    """One line per import statement and rule broken: ``file:line imports module: rule``."""
    found: dict[tuple[str, int, str], str] = {}
    for home in (*SHIPPED, *NOT_SHIPPED):
        for path in sorted((ROOT / home).rglob("*.py")) if (ROOT / home).is_dir() else ():
            where = str(path.relative_to(ROOT))
            for line, imported in imported_names(path):
                for rule in broken_rules(module_name(path), imported):
                    known = found.get((where, line, rule))
                    found[(where, line, rule)] = imported if known is None else min(known, imported, key=len)
    return [f"{where}:{line} imports {imported}: {rule}" for (where, line, rule), imported in sorted(found.items())]


def test_imports_keep_the_layers() -> None:
    found = violations()
    assert found == [], f"{len(found)} import(s) break the layers (docs/architecture.md):\n" + "\n".join(found)


def test_the_contract_catches_what_it_names() -> None:
    """The rules themselves, on made-up imports, so a rule that stopped firing is noticed."""
    assert broken_rules("router.health", "consumers.deliver.worker")
    assert not broken_rules("router.cli", "consumers.deliver.cli")
    assert broken_rules("producers.webhooks.cli", "producers.cohorts.sync")
    assert broken_rules("services.admin.app", "tools.dlq.cli")
    assert not broken_rules("services.admin.app", "router.dlq.replay")
    assert broken_rules("producers.webhooks.cli", "tools.dev.embedded.procs")
    assert not broken_rules("tools.dev.supervisor", "tools.dev.embedded.broker")
    assert broken_rules("router.serving", "support.services")
    assert broken_rules("bench.route_bench", "tests.services")
    assert not broken_rules("bench.route_bench", "support.routing")
    assert not broken_rules("tests.unit.test_layers", "consumers.route.worker")



def test_every_kind_has_a_room_in_the_architecture_doc() -> None:
    """docs/architecture.md names each kind's folder, so a newcomer finds it from the kind's name."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [kind for kind in kinds() if f"`{kind.replace('.', '/')}/`" not in doc]
    assert missing == [], f"docs/architecture.md has no row for: {', '.join(missing)}"
