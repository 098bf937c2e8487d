#!/usr/bin/env python3
"""Fails when a Rust source file holds more than --max lines outside its tests (issue #12: "no
source file holds over 1,000 non-test lines unless it is one table").

Test lines are items under `#[cfg(test)]` (a `mod tests { … }`, a test-only helper) and whole
files under a `tests/` directory. Items end at the closing brace at their own indentation, which
rustfmt guarantees (ci/test.sh checks formatting first). A file that really is one table goes
into ONE_TABLE with its reason.

  ci/non-test-lines.py            # check the tracked files, limit 1000
  ci/non-test-lines.py --list 800 # print every file above 800 non-test lines, largest first
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

# path → why its size is one table, not several jobs.
ONE_TABLE: dict[str, str] = {}

ITEM = re.compile(r"(\s*)(pub(\([^)]*\))?\s+)?(mod|fn|impl|struct|enum|const|static|use)\b")


def is_test_file(path: str) -> bool:
    return "tests" in Path(path).parts[:-1]


def non_test_lines(lines: list[str]) -> int:
    """Lines outside `#[cfg(test)]` items."""
    test = 0
    i = 0
    while i < len(lines):
        if lines[i].strip() != "#[cfg(test)]":
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].lstrip().startswith("#["):
            j += 1
        item = ITEM.match(lines[j]) if j < len(lines) else None
        if item is None:
            i = j
            continue
        end = j
        if not lines[j].rstrip().endswith(";"):
            closes = (item.group(1) + "}", item.group(1) + "};")
            end = next((k for k in range(j, len(lines)) if lines[k].rstrip() in closes), j)
        test += end - start + 1
        i = end + 1
    return len(lines) - test


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=1000, help="largest allowed count")
    parser.add_argument("--list", type=int, metavar="N", help="only list files above N")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    tracked = subprocess.run(
        ["git", "ls-files", "*.rs"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.split()
    counts = []
    for path in tracked:
        if is_test_file(path):
            continue
        text = (root / path).read_text(encoding="utf-8", errors="replace")
        counts.append((non_test_lines(text.splitlines()), path))
    counts.sort(reverse=True)
    if args.list is not None:
        for count, path in counts:
            if count > args.list:
                print(f"{count:6} {path}")
        return 0
    over = [(c, p) for c, p in counts if c > args.max and p not in ONE_TABLE]
    for count, path in over:
        print(
            f"{path}: {count} non-test lines (limit {args.max}): split it by job into a folder "
            "module, or list it in ONE_TABLE in ci/non-test-lines.py if it is one table",
            file=sys.stderr,
        )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
