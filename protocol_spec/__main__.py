"""`python -m protocol_spec` writes the generated docs; `--check` regenerates them in memory and
fails (exit 1) with a short diff summary when the committed files drifted from the server's types."""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path

from protocol_spec.catalog import build_catalog
from protocol_spec.render import GENERATED_DIRS, render_all

DEFAULT_DOCS = Path(__file__).resolve().parent.parent / "docs"
#: Diff lines shown per drifted file.
DIFF_LINES = 12


def drift(expected: dict[str, str], docs: Path) -> list[str]:
    """Human-readable problems: files missing, differing, or stale extras in generated folders."""
    problems: list[str] = []
    for rel, text in expected.items():
        path = docs / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
            continue
        actual = path.read_text(encoding="utf-8")
        if actual != text:
            diff = list(
                difflib.unified_diff(
                    actual.splitlines(), text.splitlines(), f"committed/{rel}", f"generated/{rel}", n=0, lineterm=""
                )
            )
            changed = sum(1 for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))
            shown = "\n".join("    " + line for line in diff[:DIFF_LINES])
            more = "\n    …" if len(diff) > DIFF_LINES else ""
            problems.append(f"differs: {rel} ({changed} lines)\n{shown}{more}")
    for folder in GENERATED_DIRS:
        root = docs / folder
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                rel = path.relative_to(docs).as_posix()
                if rel not in expected:
                    problems.append(f"stale (not generated any more): {rel}")
    return problems


def write(expected: dict[str, str], docs: Path) -> int:
    """Writes every generated file and removes stale ones; returns how many files changed."""
    changed = 0
    for rel, text in expected.items():
        path = docs / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        changed += 1
    for folder in GENERATED_DIRS:
        root = docs / folder
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if path.relative_to(docs).as_posix() not in expected:
                    path.unlink()
                    changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protocol_spec", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed docs differ from the generated ones")
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="docs folder (default: the repo's docs/)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    expected = render_all(build_catalog())
    if args.check:
        problems = drift(expected, args.docs)
        elapsed = time.perf_counter() - started
        if problems:
            print(f"protocol docs drifted from the server's types ({len(problems)} files):", file=sys.stderr)
            for problem in problems:
                print("  " + problem, file=sys.stderr)
            print("run `python -m protocol_spec` and commit the result", file=sys.stderr)
            return 1
        print(f"protocol docs up to date ({len(expected)} files, {elapsed:.2f}s)")
        return 0
    changed = write(expected, args.docs)
    print(f"wrote {args.docs}: {changed} of {len(expected)} files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
