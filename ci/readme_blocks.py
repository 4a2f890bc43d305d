#!/usr/bin/env python3
"""Splits README.md's shell blocks into the scripts ci/readme_check.sh runs.

Every ```sh block is run unless the line right before it says otherwise:
  <!-- readme-check: skip -->                 not run (placeholders, an app, the test suite)
  <!-- readme-check: background port=N -->   a server a user starts in a terminal of its own;
                                              run from the repository, ready once N accepts
  <!-- readme-check: expect-failure -->       must fail, printing its last comment line
  <!-- readme-check: expect-output -->        must succeed, printing its last comment line
The blocks that are run go, in order, into one script (flow.sh), as a user pastes them into one
terminal.

Usage: readme_blocks.py README.md OUTDIR
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = re.compile(r"<!-- readme-check: (\S+)(?: port=(\d+))? -->")


def blocks(text: str):
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            mark = MARKER.fullmatch(lines[i - 1].strip()) if i > 0 else None
            start = i + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            kind = mark.group(1) if mark else "run"
            port = mark.group(2) if mark else None
            yield start + 1, kind, port, lines[start:end]
            i = end
        i += 1


def main() -> None:
    readme, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    flow = ["set -eu"]
    n_bg = 0
    for line_no, kind, port, body in blocks(readme.read_text()):
        where = f"README.md line {line_no}"
        if kind == "skip":
            continue
        if kind == "background":
            if port is None:
                sys.exit(f"{where}: a background block needs port=N")
            n_bg += 1
            # Zero-padded: ci/readme_check.sh starts them in the glob's (lexical) order.
            (out / f"background-{n_bg:03d}.sh").write_text("\n".join(body) + "\n")
            (out / f"background-{n_bg:03d}.port").write_text(port + "\n")
            continue
        if kind == "run":
            flow += [f"echo '### {where}'", *body]
            continue
        if kind not in ("expect-failure", "expect-output"):
            sys.exit(f"{where}: unknown marker {kind}")
        while body and not body[-1].strip():
            body.pop()
        if not body or not body[-1].startswith("# "):
            sys.exit(f"{where}: an {kind} block ends with a '# expected text' line")
        expected = body[-1][2:]
        expect_file = out / f"expect-{line_no}.txt"
        expect_file.write_text(expected)
        command = [l for l in body if not l.startswith("# ")]
        want = "-ne 0" if kind == "expect-failure" else "-eq 0"
        flow += [
            f"echo '### {where} ({kind})'",
            "__out=$( {",
            *command,
            "} 2>&1 ) && __rc=0 || __rc=$?",
            'printf \'%s\\n\' "$__out"',
            f'if ! [ "$__rc" {want} ]; then echo "{where}: exit status $__rc" >&2; exit 1; fi',
            f'if ! printf \'%s\\n\' "$__out" | grep -qF -- "$(cat \'{expect_file}\')"; then',
            f'    echo "{where}: the output lacks: $(cat \'{expect_file}\')" >&2; exit 1',
            "fi",
        ]
    flow.append("echo '### README flow done'")
    (out / "flow.sh").write_text("\n".join(flow) + "\n")


if __name__ == "__main__":
    main()
