"""Imports point down the layers of tests/architecture.json (DESIGN.md, "Layers").

Every import under src/genlab is read with `ast` (top-level and inside functions; relative,
`from . import x` and `import genlab.x` forms) and resolved to the file it loads. An import is
reported when its arrow is in "never", when it joins two modules of a "siblings_apart" folder,
or when it names the package root.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

ARCH = json.loads((Path(__file__).parent / "architecture.json").read_text())
REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(rel: str, arch: dict):
    """The part whose most specific "is" entry (a file, or a folder ending in /) holds `rel`."""
    matches = [(len(entry), name) for name, part in arch["parts"].items() for entry in part["is"]
               if rel == entry or (entry.endswith("/") and rel.startswith(entry))]
    return max(matches)[1] if matches else None


def imported_modules(tree: ast.AST, module: str, is_package: bool, modules: set[str]):
    """(line, module) for every import of a module in `modules`, resolved to the longest module that exists."""
    def existing(name: str):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, existing(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield node.lineno, submodule if submodule in modules else existing(base)


def upward_imports(repo: Path, arch: dict) -> list[str]:
    """'file:line: rule' for every import under the package that breaks the layering."""
    src = repo / arch["package_root"]
    files = {module_name(f, src): f for f in sorted((src / arch["package"]).rglob("*.py"))}
    rel = {m: f.relative_to(repo).as_posix() for m, f in files.items()}
    never = {(a, b): why for a, b, why in arch["never"]}
    root, modules = arch["root"]["is"], set(files)
    problems = []
    for module, path in files.items():
        source, source_part = rel[module], part_of(rel[module], arch)
        tree = ast.parse(path.read_text(), str(path))
        for line, target in imported_modules(tree, module, path.name == "__init__.py", modules):
            if target is None or target == module:
                continue
            where, target_rel = f"{source}:{line}", rel[target]
            target_part = part_of(target_rel, arch)
            if target_rel == root:
                problems.append(f"{where}: imports the package root ({root}): {arch['root']['why']}")
            elif (source_part, target_part) in never:
                problems.append(f"{where}: {source_part} -> {target_part} ({target_rel}): "
                                f"{never[source_part, target_part]}")
            for folder, rule in arch["siblings_apart"].items():
                inside = [p[len(folder):] for p in (source, target_rel) if p.startswith(folder)]
                if len(inside) == 2 and not any("/" in p or p in rule["shared"] for p in inside):
                    problems.append(f"{where}: imports sibling {target_rel}: {rule['why']}")
    return list(dict.fromkeys(problems))  # one line per import statement, however many names it imports


def test_imports_point_down_the_layers():
    problems = upward_imports(REPO, ARCH)
    assert not problems, "imports that run up the layers (tests/architecture.json):\n" + "\n".join(problems)


def test_every_module_belongs_to_a_layer():
    modules = [f.relative_to(REPO).as_posix() for f in (REPO / ARCH["package_root"] / ARCH["package"]).rglob("*.py")]
    assert len(modules) > 50, modules
    loose = [m for m in modules if part_of(m, ARCH) is None]
    assert not loose, f"modules in no part of tests/architecture.json (so unchecked): {loose}"


def test_checker_reports_planted_upward_imports(tmp_path):
    files = {
        "__init__.py": "from .models import a\n",
        "io.py": "",
        "models/__init__.py": "",
        "models/base.py": "from ..io import save\n",
        "models/a.py": "from .base import Model\nfrom ..train import loop\n",
        "models/b.py": "import json\n\n\ndef f():\n    from . import a\n    import genlab.train.loop\n",
        "models/c.py": "from .. import __version__\n",
        "train/__init__.py": "",
        "train/loop.py": "from ..models import a\nfrom genlab.models.base import Model\n",
    }
    for name, text in files.items():
        path = tmp_path / "src" / "genlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    found = sorted(upward_imports(tmp_path, ARCH))
    expected = ["src/genlab/models/a.py:2: Models -> Train",
                "src/genlab/models/b.py:5: imports sibling src/genlab/models/a.py",
                "src/genlab/models/b.py:6: Models -> Train",
                "src/genlab/models/c.py:1: imports the package root"]
    assert len(found) == len(expected) and all(f.startswith(e) for f, e in zip(found, expected)), found
