#!/usr/bin/env python3
"""Runs every example in a Markdown file, as written.

An example is a fenced block tagged `console`. In it, a line starting with `$ ` is a command (a trailing
backslash continues it on the next line); every other line is sample output and is not compared. The
commands of one block run in order in one bash shell, in a fresh temporary directory, with hostfit,
make-sysroot and the example programs first on PATH. Each command must exit 0, or N when its line ends
with the comment `# exit N`. A block whose first line is `# needs: TOOL [TOOL...]` is skipped, saying so,
when a TOOL is not on PATH.

A block of another tag (or none) that holds `$ ` commands is an error: it would be an example
that nothing runs.

Usage: run_examples.py --bin-dir DIR [--bin-dir DIR...] [--timeout SECONDS] FILE.md
Exit status: 0 when every block ran (or was skipped for a missing tool), 1 when one failed, 2 on usage.
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
EXIT_COMMENT = re.compile(r"\s#\s*exit\s+(\d+)\s*$")
NEEDS = re.compile(r"^#\s*needs:\s*(.+)$")


class Block:
    def __init__(self, path, line, tag, lines):
        self.path, self.line, self.tag, self.lines = path, line, tag, lines

    def where(self):
        return f"{os.path.basename(self.path)}:{self.line}"

    def needs(self):
        if self.lines and NEEDS.match(self.lines[0].strip()):
            return NEEDS.match(self.lines[0].strip()).group(1).split()
        return []

    def commands(self):
        """(command text, expected exit code) for each `$ ` line, continuations joined."""
        cmds, current = [], None
        for raw in self.lines:
            if current is not None:
                current += "\n" + raw
            elif raw.startswith("$ "):
                current = raw[2:]
            else:
                continue
            if current.endswith("\\"):
                continue
            m = EXIT_COMMENT.search(current)
            cmds.append((current, int(m.group(1)) if m else 0))
            current = None
        if current is not None:
            cmds.append((current, 0))
        return cmds


def blocks(path):
    with open(path, encoding="utf-8") as f:
        text = f.read().splitlines()
    out, i = [], 0
    while i < len(text):
        m = FENCE.match(text[i])
        if not m:
            i += 1
            continue
        indent, tag, start = m.group(1), m.group(2), i + 1
        j = start
        while j < len(text) and not FENCE.match(text[j]):
            j += 1
        body = [l[len(indent):] if l.startswith(indent) else l for l in text[start:j]]
        out.append(Block(path, start, tag, body))
        i = j + 1
    return out


def script_for(block):
    """A bash script that runs the block's commands and checks each exit code, keeping $? for the next."""
    parts = ["set -o pipefail"]
    for n, (cmd, want) in enumerate(block.commands(), 1):
        parts.append(f"printf '%s\\n' {shlex.quote('$ ' + cmd)}")
        parts.append(cmd)
        parts.append(
            f"__rc=$?; if [ $__rc -ne {want} ]; then "
            f"echo \"example command {n} exited $__rc, expected {want}\" >&2; exit 90; fi; (exit $__rc)")
    parts.append("exit 0")  # each command was checked; the last one's expected status is not the block's
    return "\n".join(parts) + "\n"


def run_block(block, env, timeout):
    with tempfile.TemporaryDirectory(prefix="hostfit-example-") as tmp:
        benv = dict(env, HOME=env.get("HOME", tmp), HOSTFIT_LEDGER=os.path.join(tmp, "ledger.json"))
        try:
            p = subprocess.run(["bash", "-c", script_for(block)], cwd=tmp, env=benv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                               start_new_session=True)
        except subprocess.TimeoutExpired as e:
            return False, (e.stdout or b"").decode(errors="replace") + f"\n(timed out after {timeout} s)"
        return p.returncode == 0, p.stdout.decode(errors="replace")


LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def broken_links(path):
    """Relative links that lead nowhere, or out of the repository (../shared/...); each is a FAIL."""
    here = os.path.dirname(os.path.abspath(path))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    bad = 0
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):
                continue
            full = os.path.normpath(os.path.join(here, target))
            if not full.startswith(repo + os.sep) or not os.path.exists(full):
                print(f"FAIL {os.path.basename(path)}:{n}: link to {target}, which is not in the repository")
                bad += 1
    return bad


def main():
    ap = argparse.ArgumentParser(description="Run the console examples of a Markdown file.")
    ap.add_argument("--bin-dir", action="append", default=[], help="a directory put first on PATH")
    ap.add_argument("--timeout", type=int, default=180, help="seconds one block may take (default 180)")
    ap.add_argument("--verbose", action="store_true", help="print each block's output, not only a failing one's")
    ap.add_argument("file")
    args = ap.parse_args()

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.abspath(d) for d in args.bin_dir] + [env.get("PATH", "")])
    ran = skipped = failed = 0
    # The docs stand alone in a clone: a link must resolve inside the repository.
    failed += broken_links(args.file)
    for block in blocks(args.file):
        if block.tag != "console":
            if any(l.startswith("$ ") for l in block.lines):
                print(f"FAIL {block.where()}: a block tagged '{block.tag or '(none)'}' holds '$ ' commands; "
                      "tag it console so that it runs")
                failed += 1
            continue
        missing = [t for t in block.needs() if shutil.which(t, path=env["PATH"]) is None]
        if missing:
            print(f"skip {block.where()}: needs {' '.join(missing)}, not on PATH")
            skipped += 1
            continue
        if not block.commands():
            print(f"FAIL {block.where()}: a console block without a '$ ' command")
            failed += 1
            continue
        ok, output = run_block(block, env, args.timeout)
        if ok:
            print(f"ok   {block.where()} ({len(block.commands())} commands)")
            if args.verbose:
                print("\n".join("     " + l for l in output.splitlines()))
            ran += 1
        else:
            print(f"FAIL {block.where()}:\n" + "\n".join("     " + l for l in output.splitlines()[-40:]))
            failed += 1
    print(f"{os.path.basename(args.file)}: {ran} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
