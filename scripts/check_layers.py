#!/usr/bin/env python3
"""Check that src/ keeps its layers: a file includes private headers only from its
own folder or from a layer below it (DESIGN.md's picture, top to bottom). Prints
each include that points up or sideways and exits 1 if there is one."""
import pathlib
import re
import sys

# Lower rank = lower layer. stream and udp sit side by side on core: neither may
# include the other.
RANK = {"sys": 0, "core": 1, "stream": 2, "udp": 2, "proto": 3, "endpoint": 4, "ops": 5}

src = pathlib.Path(__file__).resolve().parent.parent / "src"
bad = []
for path in sorted(src.glob("*/*.[ch]")):
    layer = path.parent.name
    if layer not in RANK:
        bad.append(f"{path.relative_to(src)}: folder '{layer}' is not a known layer")
        continue
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
        if not m or m.group(1) == "tether.h" or m.group(1).startswith("tether/"):
            continue
        target = m.group(1).split("/")
        if len(target) != 2 or target[0] not in RANK:
            bad.append(f"{path.relative_to(src)}:{n}: include \"{m.group(1)}\" names no layer")
        elif target[0] != layer and RANK[target[0]] >= RANK[layer]:
            bad.append(f"{path.relative_to(src)}:{n}: {layer} includes {m.group(1)} (not below it)")
for line in bad:
    print(line)
print(f"layers: {len(bad)} include(s) out of order")
sys.exit(1 if bad else 0)
