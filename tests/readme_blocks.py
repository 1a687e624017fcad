"""README.md's commands and the ``--help`` examples, as tests run them.

The convention (also in the README's "Testing the README" note):

* every fenced ``sh``/``bash``/``shell`` and ``python`` block is run;
* an HTML comment on the nearest non-blank line above the fence classifies
  it: ``<!-- readme-test: KIND[; exit=N][; timeout=S] -->`` with KIND one of
  ``unit`` (the default), ``agents`` (two fake-driver agents host-a, host-b),
  ``lab`` (functional tests, root) or ``skip (reason)``;
* skipped blocks still have every ``migplane ...`` line parse-checked;
* placeholders (``...`` the token, ``ID`` the latest migration, ``demo`` the
  lab's name) are replaced as whole words, ``/tmp/`` paths go to a temp dir.

Shared by ``tests/unit/test_readme.py`` and
``tests/functional/test_readme_lab.py`` (loaded by path: the tests are not a
package).
"""

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
KINDS = ("unit", "agents", "lab", "skip")
LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python"}
DEFAULT_TIMEOUT = {"unit": 120, "agents": 120, "lab": 300, "skip": 0}

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s*(?:\((.*)\))?\s*(;.*)?$")
#: The ID of the newest migration any configured agent knows.
_LAST_ID = ("migplane list --json | python3 -c 'import json, sys; "
            "print(max(json.load(sys.stdin)[\"migrations\"], "
            "key=lambda m: m[\"created\"])[\"id\"])'")


@dataclasses.dataclass(frozen=True)
class Block:
    lang: str               # "sh" or "python"
    text: str
    line: int               # 1-based line of the opening fence
    kind: str = "unit"
    reason: Optional[str] = None
    exit: int = 0
    timeout: int = 120

    @property
    def id(self):
        return "L%d-%s-%s" % (self.line, self.lang, self.kind)

    def commands(self):
        """The block's shell commands, one per logical line (``\\`` joins lines),
        comments dropped."""
        joined = re.sub(r"\\\n", " ", self.text)
        return [line.strip() for line in joined.splitlines()
                if line.strip() and not line.strip().startswith("#")]


def parse_marker(text, line):
    """``(kind, reason, exit, timeout)`` of a marker's text; ValueError when malformed."""
    skip = _SKIP.match(text)
    if skip:   # the reason may hold ';'
        text = "skip" + (skip.group(2) or "")
    fields = [f.strip() for f in text.split(";")]
    head, options = fields[0], fields[1:]
    if skip:
        kind, reason = "skip", (skip.group(1) or "").strip()
        if not reason:
            raise ValueError("README.md:%d: 'skip' needs a reason: skip (why)" % line)
    elif head in KINDS:
        kind, reason = head, None
    else:
        raise ValueError("README.md:%d: unknown readme-test kind %r (want one of %s)"
                         % (line, head, ", ".join(KINDS)))
    exit_code, timeout = 0, DEFAULT_TIMEOUT[kind]
    for option in options:
        name, _, value = option.partition("=")
        if name.strip() == "exit" and value.strip().isdigit():
            exit_code = int(value)
        elif name.strip() == "timeout" and value.strip().isdigit():
            timeout = int(value)
        else:
            raise ValueError("README.md:%d: unknown readme-test option %r (exit=N, "
                             "timeout=S)" % (line, option))
    return kind, reason, exit_code, timeout


def blocks(path=README):
    """Every sh and python block of ``path``, classified by its marker."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence.group(1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")),
                   len(lines))
        i = end + 1
        if lang not in LANGUAGES:
            continue
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _MARKER.match(before)
        kind, reason, exit_code, timeout = (parse_marker(marker.group(1), start + 1)
                                            if marker else ("unit", None, 0, 120))
        found.append(Block(LANGUAGES[lang], "\n".join(lines[start + 1:end]) + "\n",
                           start + 1, kind, reason, exit_code, timeout))
    return found


def inline_commands(path=README):
    """``(line, command)`` of every inline code span of the prose that is a
    ``migplane`` command line (```migplane abort ID```)."""
    found, fenced = [], False
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            found += [(number, span) for span in re.findall(r"`(migplane [^`]+)`", line)]
    return found


# -- parse-checking migplane command lines --------------------------------------------

def migplane_argv(command):
    """``argv`` after ``migplane`` of a command line, or None if it is not one."""
    words = shlex.split(command, comments=True)
    # stop at the first shell operator: "migplane list | head" parses "list"
    for i, word in enumerate(words):
        if word in ("|", "||", "&&", ";", ">", ">>", "<"):
            words = words[:i]
            break
    if not words or os.path.basename(words[0]) != "migplane":
        return None
    return words[1:]


def parse_check(argv):
    """The usage error ``migplane ARGV`` would print, or None if argparse takes it
    (the tool's own parser included for ``lab``/``bench``)."""
    import contextlib
    import io

    from migplane.bench import main as bench_main
    from migplane.cli import main as cli_main
    from migplane.lab import cli as lab_cli

    tools = {"bench": bench_main.parser, "lab": lab_cli.parser}
    own, tool_args = cli_main.split_passthrough(list(argv))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = cli_main.build_parser().parse_args(own)
            if tool_args is not None:
                rest = tool_args[1:] if tool_args[:1] == ["--"] else tool_args
                tools[args.command]().parse_args(rest)
    except SystemExit as done:
        return None if done.code == 0 else (err.getvalue() or "exit %s" % done.code)
    return None


# -- the --help examples ------------------------------------------------------------

def help_examples():
    """``{command: [example command lines]}`` from each subcommand's help, lab and
    bench included (their own parsers)."""
    from migplane.bench import main as bench_main
    from migplane.cli import main as cli_main
    from migplane.lab import cli as lab_cli

    parser = cli_main.build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    texts = {name: sub.format_help() for name, sub in subparsers.items()}
    texts["lab"] = lab_cli.parser().format_help()
    texts["bench"] = bench_main.parser().format_help()
    return {name: examples_in(text) for name, text in texts.items()}


def examples_in(help_text):
    """The lines of the ``examples:`` section of a help text."""
    found, inside = [], False
    for line in help_text.splitlines():
        if line.strip() == "examples:":
            inside = True
        elif inside and line.startswith("  migplane "):
            found.append(line.strip())
        elif inside and line.strip() and not line.startswith("    "):
            inside = False
    return found


# -- running ------------------------------------------------------------------------

def scratch_tree(tmp_path):
    """A directory that looks like the checkout (symlinks) but where ``benchmarks/``
    is a copy, so documented commands may write there."""
    import shutil

    tree = Path(tmp_path) / "repo"
    tree.mkdir()
    for entry in ROOT.iterdir():
        if entry.name == "benchmarks":
            shutil.copytree(entry, tree / entry.name)
        elif entry.name != ".git":
            (tree / entry.name).symlink_to(entry)
    return tree


def substitute(command, values):
    """Replace each placeholder of ``values`` where it stands as a whole word."""
    for word, value in values.items():
        command = re.sub(r"(?<![^\s=])%s(?![^\s;|&)])" % re.escape(word),
                         lambda m, value=value: value, command)
    return command


def script(block, values, tmp_dir, lab_name=None):
    """The bash (or python) text that runs ``block`` with its placeholders filled."""
    text = re.sub(r"(?<![\w/.])/tmp/", str(tmp_dir) + "/", block.text)
    if lab_name:
        text = re.sub(r"\bdemo\b", lab_name, text)
    if block.lang == "python":
        return text
    values = dict(values)
    if "ID" in values:
        values["ID"] = '"$(%s)"' % _LAST_ID
    lines = [substitute(line, values) for line in text.splitlines()]
    return "set -e -o pipefail -x\n" + "\n".join(lines) + "\n"


def environment(tmp_dir, extra=None):
    env = dict(os.environ)
    for name in ("MIGPLANE_TOKEN", "MIGPLANE_CLI_CONFIG"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT)   # the checkout under test, whatever the venv points to
    home = Path(tmp_dir) / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), PATH="%s:%s" % (Path(sys.executable).parent,
                                                env.get("PATH", "/usr/bin:/bin")))
    env.update(extra or {})
    return env


def run(block, cwd, env, values=None, lab_name=None, tmp_dir=None):
    """Run ``block``; ``(exit code, output)`` with the script shown for failures."""
    tmp_dir = tmp_dir or cwd
    text = script(block, values or {}, tmp_dir, lab_name)
    argv = ([sys.executable, "-"] if block.lang == "python" else ["bash", "-s"])
    try:
        done = subprocess.run(argv, input=text, cwd=str(cwd), env=env, text=True,
                              capture_output=True, timeout=block.timeout)
    except subprocess.TimeoutExpired as err:
        return -1, "timed out after %s s\n%s\n%s" % (block.timeout, err.stdout, err.stderr)
    return done.returncode, "README.md:%d\n--- script\n%s--- stdout\n%s--- stderr\n%s" % (
        block.line, text, done.stdout[-4000:], done.stderr[-4000:])
