#!/usr/bin/env python3
"""Generate docs/api.md from include/tether.h.

The header is the single source of the API reference: every public function has a
doc comment there (what it does, ownership, when callbacks fire, what it returns).
This script turns it into a browsable page, section by section, and adds the
thread each call may be made on. `--check` fails when docs/api.md is stale, so the
test suite keeps the two in step.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "tether.h"
OUT = ROOT / "docs" / "api.md"

# Calls that may be made from any thread; everything else belongs to the thread
# running the handle's loop (see "Threads" below).
ANY_THREAD = {
    "tt_loop_post": "any thread (not from a signal handler)",
    "tt_loop_stop": "any thread, and from a signal handler",
    "tt_workers_start": "any thread that is not a worker",
    "tt_workers_stop": "any thread that is not a worker",
    "tt_workers_broadcast": "any thread (see `except`)",
    "tt_workers_visit": "any thread that is not a worker",
    "tt_workers_count": "any thread",
    "tt_workers_loop": "any thread",
    "tt_workers_addr": "any thread",
    "tt_admin_start_workers": "any thread that is not a worker",
    "tt_strerror": "any thread",
    "tt_err_name": "any thread",
    "tt_listen_fds": "any thread, before other threads read the environment",
    "tt_loop_init": "any thread (the loop then belongs to the thread that runs it)",
    "tt_loop_close": "the thread that ran the loop, after tt_loop_run returned",
    "tt_liveness_derive": "any thread",
}
PURE_PREFIXES = ("tt_addr_", "tt_frame_u", "tt_frame_length", "tt_frame_varint",
                 "tt_frame_line", "tt_frame_crlf", "tt_frame_delimiter", "tt_frame_fixed")

PROTO_RE = re.compile(r"TT_EXTERN\s+(.+?)\b(tt_\w+)\s*\(", re.S)


def strip_comment(block):
    lines = []
    for line in block.splitlines():
        line = line.strip()
        line = re.sub(r"^/\*+", "", line)
        line = re.sub(r"\*+/$", "", line)
        line = re.sub(r"^\*\s?", "", line)
        lines.append(line.rstrip())
    text = "\n".join(lines).strip()
    return text


def thread_of(name):
    if name in ANY_THREAD:
        return ANY_THREAD[name]
    if name.startswith(PURE_PREFIXES):
        return "any thread (pure function)"
    return "the loop's thread"


def parse(text):
    """Yield (kind, payload) items in header order."""
    pos = 0
    n = len(text)
    pending_comment = None
    while pos < n:
        if text.startswith("/*", pos):
            end = text.index("*/", pos) + 2
            block = text[pos:end]
            m = re.match(r"/\* ---- (.+?) -*\s*(\n|\*/)", block)
            if m:
                title = m.group(1).strip()
                rest = block[m.end():] if m.group(2) == "\n" else ""
                yield ("section", (title, strip_comment(rest)))
                pending_comment = None
            else:
                pending_comment = block
            pos = end
            continue
        if text.startswith("TT_EXTERN", pos):
            end = text.index(";", pos) + 1
            proto = " ".join(text[pos:end].split())
            proto = proto.replace("TT_EXTERN ", "")
            m = PROTO_RE.search(text[pos:end])
            name = m.group(2) if m else proto
            yield ("func", (name, proto, strip_comment(pending_comment or "")))
            pending_comment = None
            pos = end
            continue
        # typedefs, structs, enums and defines: carried as code with their comment
        m = re.match(r"(typedef\b.*?;|#define [^\n]*(?:\\\n[^\n]*)*)", text[pos:], re.S)
        if m and (text[pos:].startswith("typedef") or text[pos:].startswith("#define")):
            chunk = m.group(1)
            # a typedef struct/enum: up to the closing "} name;"
            if chunk.startswith("typedef") and "{" in chunk.split(";")[0]:
                depth = 0
                i = pos
                while i < n:
                    c = text[i]
                    if c == "{":
                        depth += 1
                    elif c == "}":
                        depth -= 1
                    elif c == ";" and depth == 0:
                        break
                    i += 1
                chunk = text[pos:i + 1]
            name = chunk.split("\n")[0]
            if not name.startswith("#define TETHER_H") and "TT_EXTERN" not in name:
                yield ("decl", (chunk.strip(), strip_comment(pending_comment or "")))
            pending_comment = None
            pos += len(chunk)
            continue
        if text[pos] == "\n" and pending_comment is not None and text.startswith("\n\n", pos):
            pending_comment = pending_comment  # a blank line keeps the comment for what follows
        pos += 1


INTRO = """# tether API reference

Generated from `include/tether.h` by `scripts/gen_api_doc.py`; the header is the
source. Guides with worked examples: [README](../README.md),
[framing](framing.md), [liveness](liveness.md), [UDP](udp.md),
[clients](clients.md), [CLI](cli.md).

## Conventions

- **Errors.** Every call that can fail returns 0 (or a documented non-negative
  value) on success and a negative errno on failure; tether's own codes sit below
  -4000 (`TT_EOF`, `TT_EFRAMESIZE`, ...). `tt_strerror()` and `tt_err_name()` give
  text. An invalid call returns `-EINVAL` and has changed nothing.
- **Threads.** A handle belongs to one loop, and so to the thread running that
  loop, for life. Each call below says where it may be made; "the loop's thread"
  means the thread that runs (or will run) the loop of the handle it takes. The
  thread-safe calls are `tt_loop_post`, `tt_loop_stop` and the worker-set calls.
- **Callbacks.** No user callback runs inside an API call (audit hooks excepted:
  they decide the call's outcome); results are delivered by the loop. Any call
  may be made from inside a callback, including destroying the handle it is
  about: the free is deferred until the callback returns.
- **Ownership.** Each prototype's comment says who owns what: sends are copied,
  handed over with a free callback, or (files) read in place; received data is
  lent to the callback for its duration.
"""


def render(text):
    out = [INTRO]
    block = []  # consecutive declarations share one code block

    def flush():
        if block:
            out.append("```c\n" + "\n".join(block) + "\n```\n")
            block.clear()

    for kind, payload in parse(text):
        if kind == "decl":
            chunk, doc = payload
            if doc:
                flush()
                out.append("\n" + doc + "\n")
            block.append(chunk)
            continue
        flush()
        if kind == "section":
            title, prose = payload
            out.append(f"\n## {title[0].upper() + title[1:]}\n")
            if prose:
                out.append(prose + "\n")
        elif kind == "func":
            name, proto, doc = payload
            out.append(f"\n### `{name}`\n")
            out.append(f"```c\n{proto}\n```\n")
            if doc:
                out.append(doc + "\n")
            out.append(f"\n*Thread:* {thread_of(name)}.\n")
    flush()
    return "".join(out)


def main():
    doc = render(HEADER.read_text())
    if "--check" in sys.argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != doc:
            print("docs/api.md is out of date: run scripts/gen_api_doc.py", file=sys.stderr)
            return 1
        names = set(re.findall(r"TT_EXTERN\s+[^;]*?\b(tt_\w+)\s*\(", HEADER.read_text()))
        missing = [n for n in sorted(names) if f"### `{n}`" not in doc]
        if missing:
            print("undocumented in api.md: " + ", ".join(missing), file=sys.stderr)
            return 1
        print(f"1 passed, 0 failed: docs/api.md documents all {len(names)} public calls")
        return 0
    OUT.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
