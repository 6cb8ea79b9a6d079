"""``python -m benchmarks.run`` (``make bench``): runs every benchmark and rewrites docs/benchmarks.md.

A benchmark is any module of this package that defines ``main(argv) -> int``, ``RESULTS_FILE`` and
``markdown(results) -> str`` (see ``benchmarks/__init__.py``). Each runs with its default arguments,
one after the other; the document is then rebuilt from every results file present, so a benchmark
that failed keeps its previous figures (and the command exits non-zero).

``--only NAME[,NAME]`` runs some of them; ``--render-only`` runs none and only rewrites the document.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path
from types import ModuleType

import benchmarks

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = REPO_ROOT / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Measured by `make bench` (`python -m benchmarks.run`), which runs every module of `benchmarks/` on
the real servers of `make up` and rewrites this page from `benchmarks/results/*.json`. Speed is
measured here, never asserted in tests. Each section names the commit, the machine and the command
of its run; figures from shared or busy machines move between runs, so compare runs of one machine.
"""


def discover() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Every benchmark module of the package by name, in name order; and those that failed to import,
    with the error (one broken benchmark must not stop the others)."""
    found, broken = {}, {}
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if info.name == "run":
            continue
        try:
            module = importlib.import_module(f"benchmarks.{info.name}")
        except Exception as exc:
            broken[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        if all(hasattr(module, attr) for attr in ("main", "markdown", "RESULTS_FILE")):
            found[info.name] = module
    return found, broken


def render(modules: dict[str, ModuleType]) -> str:
    sections = [HEADER]
    for name, module in modules.items():
        results_file = Path(module.RESULTS_FILE)
        if results_file.exists():
            sections.append(module.markdown(json.loads(results_file.read_text())))
        else:
            sections.append(f"## {name}\n\nNot run yet: `python -m benchmarks.{name}`.\n")
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    parser.add_argument("--render-only", action="store_true", help="rewrite docs/benchmarks.md only")
    args = parser.parse_args(argv)
    modules, broken = discover()
    for name, error in broken.items():
        print(f"== benchmark {name} cannot be imported: {error}", file=sys.stderr)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or [*modules, *broken]
    unknown = sorted(set(chosen) - set(modules) - set(broken))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted([*modules, *broken])}", file=sys.stderr)
        return 2
    failed = [name for name in chosen if name in broken]
    if not args.render_only:
        for name in (n for n in chosen if n in modules):
            print(f"== benchmark {name}", flush=True)
            started = time.monotonic()
            try:
                code = modules[name].main([])
            except Exception as exc:  # one failing benchmark must not keep the others from running
                print(f"== {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                code = 1
            print(f"== {name} finished in {time.monotonic() - started:.0f}s with exit code {code}", flush=True)
            if code != 0:
                failed.append(name)
    DOCUMENT.write_text(render(modules))
    print(f"wrote {DOCUMENT.relative_to(REPO_ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
