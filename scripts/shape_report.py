"""Print the code-shape figures the project tracks (stdlib only, reads the tree, changes nothing).

- module sizes: count, mean, the largest, how many are over 400 lines;
- the longest functions;
- in ``sdrest/api``: functions annotated to return ``dict[str, Any]``, reaches into
  ``service.registry`` and imports of ``sdrest.planning`` (the facade rule: all three stay low).

Usage: ``python scripts/shape_report.py [--list]`` (``--list`` names every ``dict[str, Any]``
return with its location).
"""

from __future__ import annotations

import ast
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sdrest"
logger = logging.getLogger("shape_report")


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


class Figures:
    """What one pass over the package measured."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.lengths: list[tuple[int, str]] = []
        self.dict_returns: list[str] = []
        self.registry_reaches = 0
        self.planning_imports = 0

    def read(self, path: Path) -> None:
        """Measure one module."""
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        self.sizes[rel] = text.count("\n")
        tree = ast.parse(text)
        in_api = rel.startswith("sdrest/api/")
        for func in _functions(tree):
            end = func.end_lineno or func.lineno
            self.lengths.append((end - func.lineno + 1, f"{rel}:{func.lineno} {func.name}"))
            returns = ast.unparse(func.returns) if func.returns is not None else ""
            if in_api and returns == "dict[str, Any]":
                self.dict_returns.append(f"{rel}:{func.lineno} {func.name}")
        if in_api:
            self.registry_reaches += text.count("service.registry")
            self.planning_imports += sum(1 for node in ast.walk(tree) if _imports_planning(node))


def _imports_planning(node: ast.AST) -> bool:
    if not isinstance(node, ast.ImportFrom) or node.module is None:
        return False
    names = [alias.name for alias in node.names]
    return node.module == "sdrest.planning" or (node.module == "sdrest" and "planning" in names)


def report(figures: Figures, *, listing: bool) -> None:
    """Log the figures."""
    sizes = figures.sizes
    big = sorted(((n, p) for p, n in sizes.items() if n > 400), reverse=True)
    largest = max(sizes, key=lambda p: sizes[p])
    mean = sum(sizes.values()) / len(sizes)
    logger.info(
        "modules: %d, mean %.0f lines, largest %d (%s), over 400: %d",
        len(sizes), mean, sizes[largest], largest, len(big),
    )  # fmt: skip
    for lines, path in big:
        logger.info("  %4d %s", lines, path)
    lengths = sorted(figures.lengths, reverse=True)
    logger.info("longest functions:")
    for lines, where in lengths[:5]:
        logger.info("  %4d %s", lines, where)
    logger.info("functions over 60 lines: %d", sum(1 for n, _ in lengths if n > 60))
    logger.info("api: dict[str, Any] returns: %d", len(figures.dict_returns))
    if listing:
        for where in figures.dict_returns:
            logger.info("  %s", where)
    logger.info("api: service.registry reaches: %d", figures.registry_reaches)
    logger.info("api: sdrest.planning imports: %d", figures.planning_imports)


def main(argv: list[str]) -> int:
    """Print the figures; exit 0."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    figures = Figures()
    for path in sorted(PACKAGE.rglob("*.py")):
        figures.read(path)
    report(figures, listing="--list" in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
