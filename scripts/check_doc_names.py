#!/usr/bin/env python3
"""User documentation names only what a user can use: fail when README.md or
docs/*.md (in `code`) names an internal identifier, one that appears in src/ but
nowhere a user can reach it (include/, tools/, examples/, the build options)."""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def words(paths):
    out = set()
    for p in paths:
        for f in p.rglob("*") if p.is_dir() else [p]:
            if f.is_file() and f.suffix in (".c", ".h", ".txt", ".cmake", ".in", ".py", ".sh"):
                out.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f.read_text(errors="replace")))
    return out


private = words([root / "src"])
public = words([root / "include", root / "tools", root / "examples", root / "CMakeLists.txt",
                root / "cmake", root / "bench", root / "scripts"])
KERNEL = ("tcpi_", "sk_", "icsk_")
bad = []
for doc in docs:
    for n, line in enumerate(doc.read_text().splitlines(), 1):
        for code in re.findall(r"`([^`]+)`", line):
            if "/" in code:
                continue  # a path: the source tree is documented as such
            for tok in re.findall(r"[A-Za-z_][A-Za-z0-9_]*(?:->[A-Za-z_][A-Za-z0-9_]*)*", code):
                last = tok.split("->")[-1]
                if last.startswith(KERNEL):
                    continue  # the kernel's names (tcp(7), socket(7))
                if last.startswith("tether_"):
                    continue  # a metric name: public output of the metrics endpoint
                internal = tok.startswith("tt__") or (
                    "_" in last.strip("_") and last.islower() and last in private
                    and last not in public)
                if internal:
                    bad.append(f"{doc.relative_to(root)}:{n}: internal name `{tok}`")
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
