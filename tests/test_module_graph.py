"""The module graph of the Rust crate: no circles, and the core never reaches the host.

A module's edges are the `crate::…` paths its non-test code names; `a::b` naming `a` (its
parent's own items) counts, so a child that imports back from its parent is a circle too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set

from harness.repo import REPO_ROOT

SRC = REPO_ROOT / "src"
_PATH = re.compile(r"crate::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)(?:::\{([^}]*)\})?")


def modules(src: Path) -> Dict[str, Path]:
    """Module path (`core::auth::token`) → file, test-only files left out."""
    found = {}
    for file in sorted(src.rglob("*.rs")):
        parts = list(file.relative_to(src).with_suffix("").parts)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        if parts and (parts[-1].endswith("_tests") or parts[-1] == "main" or parts[0] == "bin"):
            continue
        found["::".join(parts)] = file
    return found


def non_test_code(text: str) -> str:
    """The file up to its first `#[cfg(test)]` item (tests sit at the end of a file here)."""
    return text.split("#[cfg(test)]", 1)[0]


def edges(src: Path) -> Dict[str, Set[str]]:
    mods = modules(src)

    def resolve(path: str) -> str | None:
        parts = path.split("::")
        while parts:
            name = "::".join(parts)
            if name in mods:
                return name
            parts.pop()
        return None

    graph: Dict[str, Set[str]] = {name: set() for name in mods}
    for name, file in mods.items():
        for match in _PATH.finditer(non_test_code(file.read_text(encoding="utf-8"))):
            base, group = match.group(1), match.group(2)
            targets = [base]
            if group:
                targets = [f"{base}::{item.strip().split()[0].split('::')[0]}" for item in group.split(",") if item.strip()]
            for target in targets:
                resolved = resolve(target)
                if resolved and resolved != name and resolved != "":
                    graph[name].add(resolved)
    return graph


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_circle_through_a_parent(tmp_path: Path) -> None:
    (tmp_path / "core" / "config").mkdir(parents=True)
    (tmp_path / "lib.rs").write_text("pub mod core;\n")
    (tmp_path / "core" / "mod.rs").write_text("pub mod config;\n")
    (tmp_path / "core" / "config" / "mod.rs").write_text("pub mod values;\nuse crate::core::config::values::flag;\n")
    (tmp_path / "core" / "config" / "values.rs").write_text(
        "use crate::core::config::ConfigError;\n#[cfg(test)]\nmod tests { use crate::core::other; }\n"
    )
    assert circles(edges(tmp_path)) == [["core::config", "core::config::values"]]


def test_the_crate_has_no_module_circles() -> None:
    assert circles(edges(SRC)) == []


def test_the_core_never_names_the_host_or_the_sdk() -> None:
    offenders = [
        str(file.relative_to(REPO_ROOT))
        for file in sorted((SRC / "core").rglob("*.rs"))
        if re.search(r"\bproxy_wasm\b|crate::host\b", file.read_text(encoding="utf-8"))
    ]
    assert offenders == []
