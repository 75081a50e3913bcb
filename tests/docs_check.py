"""Check that the README and docs/ name only things that exist.

Over Markdown files, it reports:

- a relative link or image whose file does not exist (or lies outside the repository), or whose ``#anchor``
  is not a heading of the Markdown file it points to (GitHub's heading ids);
- a ``make <target>`` in a code span or shell block whose target ``make -n`` does not know;
- a ``trl-drgrpo <command>`` (also ``python recipes/train.py``, ``python -m trl_drgrpo...``,
  ``python benchmarks/x.py``) with a subcommand or ``--flag`` its ``--help`` does not list; a flag named alone in a
  code span must be an option of one of the project's commands (a page whose spans name other projects' flags
  says so with the comment ``<!-- docs-check: foreign flags -->``);
- a repository path (``recipes/...``, ``trl_drgrpo/...``, ``tests/...``, ... globs too) that matches no file;
- a Python name ``trl_drgrpo.a.b`` or ``from trl_drgrpo.a import B`` that does not import.

Run it with ``python -m tests.docs_check [FILE ...]`` from the repository root; ``tests/test_docs.py`` runs it over
README.md and docs/ in the test suite. Shell comments in code blocks are prose: only paths and Python names in
them are checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib
import importlib.util
import io
import logging
import os
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "trl_drgrpo"
# Top-level folders of this repository: a path in a code span that starts with one of them must exist.
REPO_DIRS = ("recipes", "trl_drgrpo", "tests", "benchmarks", "scripts", "accelerate_configs", "docs", ".ci")
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console", "zsh")
FOREIGN_FLAGS_MARK = "<!-- docs-check: foreign flags -->"
SHELL_OPERATORS = {";", "&&", "||", "|", "&", ")", "(", "do", "done", "then", "fi", "for", "in"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reference in a document that names something that does not exist."""

    file: str
    line: int
    kind: str  # link, anchor, make, command, flag, path, import
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.kind}] {self.message}"


@dataclasses.dataclass(frozen=True)
class Code:
    """A code span (``language`` None) or a fenced block's text, with the line it starts on."""

    line: int
    text: str
    language: str | None
    external: bool = False  # the text of a link to another site: it names that site's things


@dataclasses.dataclass
class Markdown:
    """The parts of a Markdown document the checks read."""

    codes: list[Code]
    links: list[tuple[int, str]]
    headings: list[str]
    foreign_flags: bool


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]\\]|\\.|\[[^\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"<(?:img|a|source)\b[^>]*?\s(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def parse_markdown(text: str) -> Markdown:
    """Split ``text`` into code (fenced blocks and inline spans), links/images outside code, and headings."""
    codes: list[Code] = []
    paragraphs: list[tuple[int, list[str]]] = []  # (first line, lines) of text outside fences
    headings: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match:
            fence, language = match.group(1), match.group(2).lower()
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith(fence):
                body.append(lines[i])
                i += 1
            codes.append(Code(start + 1, "\n".join(body), language))
        elif not lines[i].strip():
            pass
        else:
            heading = HEADING.match(lines[i])
            if heading:
                headings.append(heading.group(2))
            if paragraphs and paragraphs[-1][0] + len(paragraphs[-1][1]) == i + 1 and not heading:
                paragraphs[-1][1].append(lines[i])
            else:
                paragraphs.append((i + 1, [lines[i]]))
        i += 1
    links: list[tuple[int, str]] = []
    for first, block in paragraphs:
        joined = "\n".join(block)
        external = [m.span() for m in LINK.finditer(joined) if is_external(m.group(1))]
        for span in SPAN.finditer(joined):
            # a code span may wrap lines; `\|` is how a table cell writes `|`, also inside code spans
            content = " ".join(span.group(2).split()).replace("\\|", "|")
            inside = any(start < span.start() < end for start, end in external)
            codes.append(Code(first + joined.count("\n", 0, span.start()), content, None, inside))
        # spans blanked out (newlines kept), so that neither their text nor a `](` in them reads as a link
        prose = SPAN.sub(lambda m: re.sub(r"[^\n]", "x", m.group(0)), joined)
        for pattern in (LINK, HTML_REF):
            links += [(first + prose.count("\n", 0, m.start()), m.group(1)) for m in pattern.finditer(prose)]
    codes.sort(key=lambda code: code.line)
    return Markdown(codes, sorted(links), headings, FOREIGN_FLAGS_MARK in text)


def is_external(target: str) -> bool:
    """A link to another site (``https:``, ``mailto:``, ``//host``), not a file of this repository."""
    return bool(re.match(r"^[a-zA-Z][\w+.-]*:", target)) or target.startswith("//")


def github_slug(heading: str) -> str:
    """The id GitHub gives a heading: its text lower-cased, punctuation dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_, not snake_case
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def heading_ids(headings: Iterable[str]) -> set[str]:
    """Every heading id of a page, repeated headings numbered ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    ids: set[str] = set()
    for heading in headings:
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def check_links(path: Path, doc: Markdown, root: Path, report: Callable[[int, str, str], None]) -> None:
    """Relative links and images must resolve inside ``root``; anchors must be headings of the target page."""
    for line, target in doc.links:
        if is_external(target):
            continue
        file_part, _, anchor = target.partition("#")
        base = root / file_part.lstrip("/") if file_part.startswith("/") else path.parent / file_part
        resolved = Path(os.path.normpath(base.absolute()))  # `..` folded, symlinks kept (as on GitHub)
        if not resolved.is_relative_to(root.absolute()):
            report(line, "link", f"{target} points outside the repository")
        elif not resolved.exists():
            report(line, "link", f"{target}: no such file")
        elif anchor and resolved.suffix.lower() == ".md":
            if anchor not in heading_ids(parse_markdown(resolved.read_text(encoding="utf-8")).headings):
                report(line, "anchor", f"{target}: no heading with id #{anchor} in {resolved.name}")


def shell_commands(code: Code) -> list[tuple[int, list[str]]]:
    """Commands of a span or shell block as token lists: continuations joined, comments dropped, split at
    ``;``, ``&&``, ``|`` ... (so ``for t in a b; do make x; done`` yields ``make x``)."""
    if code.language not in (None, *SHELL_LANGUAGES):
        return []
    commands: list[tuple[int, list[str]]] = []
    logical: list[tuple[int, str]] = []  # (first physical line, text) with `\` continuations joined
    pending: tuple[int, str] | None = None
    for offset, physical in enumerate(code.text.split("\n")):
        start, text = pending if pending else (code.line + offset, "")
        text += physical
        pending = (start, text[:-1] + " ") if physical.endswith("\\") else None
        if pending is None:
            logical.append((start, text))
    if pending:
        logical.append(pending)
    for line, raw in logical:
        lexer = shlex.shlex(raw, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote in prose-like text: fall back to whitespace
            tokens = raw.split("#", 1)[0].split()
        current: list[str] = []
        for token in tokens:
            if token in SHELL_OPERATORS or set(token) <= set(";&|()"):
                if current:
                    commands.append((line, current))
                current = []
            else:
                current.append(token)
        if current:
            commands.append((line, current))
    return commands


def make_targets(tokens: Sequence[str]) -> list[str]:
    """Targets of a ``make ...`` command: its words that are neither options nor ``VAR=value``."""
    if not tokens or Path(tokens[0]).name not in ("make", "gmake"):
        return []
    return [t for t in tokens[1:] if re.fullmatch(r"[A-Za-z0-9_][\w.-]*", t)]


def make_knows(target: str, root: Path) -> str | None:
    """None when ``make -n target`` succeeds in ``root`` (nothing is run), else make's message."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        # a sub-make of `make test` would name itself make[1] in its messages: run it as a top-level make
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
    )
    if result.returncode == 0:
        # a name only listed in .PHONY (its rule gone) is "known" to make but does nothing
        return f"{target} has no rule (nothing to be done)" if "Nothing to be done" in result.stdout else None
    lines = [x for x in result.stderr.strip().splitlines() if x.strip()]
    return lines[-1] if lines else f"make -n {target} exited with {result.returncode}"


# --- commands and their --help ------------------------------------------------------------------------------

Entry = tuple[str, str]  # ("module", "trl_drgrpo.cli") or ("path", "recipes/train.py")


def command_entry(tokens: Sequence[str], root: Path) -> tuple[Entry, int] | None:
    """The project command a token list runs, and the index of its first argument; None if it runs none."""
    for i, token in enumerate(tokens):
        if token == "trl-drgrpo":
            return ("module", f"{PACKAGE}.cli"), i + 1
        if token == "trl-drgrpo-tiny":
            return ("module", f"{PACKAGE}.demo.tiny"), i + 1
        if token == "-m" and i + 1 < len(tokens) and tokens[i + 1].split(".")[0] == PACKAGE:
            return ("module", tokens[i + 1]), i + 2
        if token.endswith(".py") and token.split("/")[0] in ("recipes", "benchmarks", "scripts"):
            return (("path", token), i + 1) if (root / token).is_file() else None
    return None


class HelpCache:
    """``--help`` texts of the project's commands, produced in this process (argparse exits before any work)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.texts: dict[tuple[Entry, tuple[str, ...]], tuple[int, str]] = {}

    def help(self, entry: Entry, path: Sequence[str]) -> tuple[int, str]:
        """(exit status, stdout + stderr) of ``<entry> <path...> --help``."""
        key = (entry, tuple(path))
        if key not in self.texts:
            self.texts[key] = self._run(entry, [*path, "--help"])
        return self.texts[key]

    def _run(self, entry: Entry, argv: list[str]) -> tuple[int, str]:
        kind, target = entry
        out = io.StringIO()
        saved_argv, status = sys.argv, 0
        # a command may configure logging before it parses: leave the caller's logging as it was
        root, project = logging.getLogger(), logging.getLogger(PACKAGE)
        saved_logging = (root.level, list(root.handlers), project.level)
        sys.argv = [target, *argv]
        try:
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(out),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore")
                if kind == "module":
                    runpy.run_module(target, run_name="__main__", alter_sys=False)
                else:
                    runpy.run_path(str(self.root / target), run_name="__main__")
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except Exception as error:  # a broken command is a finding, not a crash of the check
            status, out = 1, io.StringIO(f"{type(error).__name__}: {error}")
        finally:
            sys.argv = saved_argv
            root.setLevel(saved_logging[0])
            root.handlers[:] = saved_logging[1]
            project.setLevel(saved_logging[2])
        return status, out.getvalue()

    def flags(self, entry: Entry, path: Sequence[str]) -> set[str]:
        """The long options the help lists (argparse prints each option's line at an indent of two)."""
        _, text = self.help(entry, path)
        found: set[str] = set()
        for line in text.splitlines():
            match = re.match(r"^  (-\S.*)$", line)
            if match:
                found |= set(re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", match.group(1).split("  ")[0]))
        usage = text.split("\n\n", 1)[0]
        if re.search(r"(?<![\w-])--config\b", usage):
            found.add("--config")  # TRL's TrlParser reads --config before argparse sees the arguments
        if (entry == ("module", f"{PACKAGE}.cli") and path[:1] == ["train"]) or entry == (
            "path",
            "recipes/train.py",
        ):
            from trl_drgrpo.cli import LAUNCH_OPTIONS  # consumed by the launcher, not the training parser

            found |= {f"--{name}" for name in LAUNCH_OPTIONS}
        return found


def command_problems(tokens: Sequence[str], helps: HelpCache) -> tuple[list[tuple[str, str]], set[str]]:
    """Problems of one command line ((kind, message) pairs) and the flags of the command it names."""
    found = command_entry(tokens, helps.root)
    if found is None:
        return [], set()
    entry, start = found
    name = (
        entry[1]
        if entry[0] == "path"
        else " ".join(tokens[start - (3 if tokens[start - 2] == "-m" else 1) : start])
    )
    args = [t for t in tokens[start:]]
    # Descend through leading words while each is a subcommand (its --help differs from its parent's).
    path: list[str] = []
    status, parent_text = helps.help(entry, path)
    if status != 0:
        return [("command", f"`{name} --help` fails: {parent_text.strip().splitlines()[-1:]}")], set()
    for word in args:
        if word.startswith("-") or not re.fullmatch(r"[a-z][\w-]*", word):
            break
        status, text = helps.help(entry, [*path, word])
        if status != 0:
            if not path or _has_subcommands(parent_text):
                return [("command", f"`{name} {' '.join([*path, word])}`: no such command")], set()
            break
        if text == parent_text:
            break  # a positional argument, not a subcommand
        path.append(word)
        parent_text = text
    known = helps.flags(entry, path)
    problems = []
    for token in args[len(path) :]:
        if token == "--":
            break  # what follows goes to another command
        flag = token.lstrip("[").split("=", 1)[0].rstrip("]")
        if flag.startswith("--") and re.fullmatch(r"--[A-Za-z][\w-]*", flag) and flag not in known:
            problems.append(("flag", f"`{' '.join([name, *path])}` has no option {flag}"))
    return problems, known


def _has_subcommands(help_text: str) -> bool:
    return bool(re.search(r"^usage:.*\{|^usage: .* command \.\.\.", help_text, re.M))


# --- paths and Python names ---------------------------------------------------------------------------------

PATH_TOKEN = re.compile(r"(?<![\w./-])((?:" + "|".join(map(re.escape, REPO_DIRS)) + r")/[\w./*+-]*)")


def repo_paths(text: str) -> list[tuple[int, str]]:
    """(offset, path) of the repository paths named in ``text`` (placeholders such as ``<model>`` and ``...``
    skipped)."""
    paths = []
    for match in PATH_TOKEN.finditer(text):
        end = match.end()
        path = match.group(1).rstrip(".,:;")
        if "..." in path or (end < len(text) and text[end] in "<{$"):
            continue
        paths.append((match.start(), path))
    return paths


def path_exists(path: str, root: Path) -> bool:
    if any(c in path for c in "*?["):
        return bool(glob.glob(str(root / path)))
    return (root / path).exists()


DOTTED = re.compile(r"(?<![\w.])(trl_drgrpo(?:\.[A-Za-z_]\w*)+)")
FROM_IMPORT = re.compile(
    r"\bfrom[ \t]+(trl_drgrpo(?:\.\w+)*)[ \t]+import[ \t]+(?:\(([\w\s,]+)\)|([\w \t,]+))"
)


def python_names(text: str) -> list[tuple[int, str]]:
    """(offset, name) of the ``trl_drgrpo.x.y`` names and ``from trl_drgrpo.x import A, B`` (as
    ``trl_drgrpo.x.A``, ...) in ``text``."""
    names = [(m.start(), m.group(1)) for m in DOTTED.finditer(text)]
    for match in FROM_IMPORT.finditer(text):
        for item in (match.group(2) or match.group(3)).split(","):
            words = item.split()
            if words:
                names.append((match.start(), f"{match.group(1)}.{words[0]}"))
    return names


def resolve_python(name: str) -> str | None:
    """None when ``name`` is an importable module or an attribute reached from one; else why not."""
    parts = name.split(".")
    module = None
    for cut in range(len(parts), 0, -1):
        try:
            if importlib.util.find_spec(".".join(parts[:cut])) is None:
                continue
            module = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        except Exception as error:
            return f"importing {'.'.join(parts[:cut])} fails: {type(error).__name__}: {error}"
        break
    if module is None:
        return "no such module"
    obj = module
    for attribute in parts[cut:]:
        if not hasattr(obj, attribute):
            return f"{'.'.join(parts[:cut])} has no {'.'.join(parts[cut:])}"
        obj = getattr(obj, attribute)
    return None


# --- the whole check ----------------------------------------------------------------------------------------


def check(files: Iterable[Path], root: Path = REPO_ROOT) -> list[Problem]:
    """Every problem in ``files`` (Markdown), in file and line order."""
    problems: list[Problem] = []
    helps = HelpCache(root)
    targets: dict[str, list[tuple[str, int]]] = {}
    all_flags: set[str] = set()
    lone_flags: list[tuple[str, int, str]] = []
    imports: dict[str, list[tuple[str, int]]] = {}
    for path in files:
        path = Path(path)
        absolute = Path(os.path.normpath(path.absolute()))
        name = (
            str(absolute.relative_to(root.absolute()))
            if absolute.is_relative_to(root.absolute())
            else str(path)
        )
        doc = parse_markdown(path.read_text(encoding="utf-8"))

        def report(line: int, kind: str, message: str, name: str = name) -> None:
            problems.append(Problem(name, line, kind, message))

        check_links(path, doc, root, report)
        for code in doc.codes:
            if code.external:
                continue
            for line, tokens in shell_commands(code):
                for target in make_targets(tokens):
                    targets.setdefault(target, []).append((name, line))
                found, flags = command_problems(tokens, helps)
                all_flags |= flags
                for kind, message in found:
                    report(line, kind, message)
            if code.language is None and code.text.startswith("--") and not doc.foreign_flags:
                for flag in re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", code.text):
                    lone_flags.append((name, code.line, flag))
            for offset, repo_path in repo_paths(code.text):
                if not path_exists(repo_path, root):
                    report(
                        code.line + code.text.count("\n", 0, offset),
                        "path",
                        f"{repo_path}: no such file or folder",
                    )
            for offset, python_name in python_names(code.text):
                imports.setdefault(python_name, []).append(
                    (name, code.line + code.text.count("\n", 0, offset))
                )
    for target, places in targets.items():
        message = make_knows(target, root)
        if message:
            problems += [Problem(f, n, "make", f"make {target}: {message}") for f, n in places]
    for python_name, places in imports.items():
        message = resolve_python(python_name)
        if message:
            problems += [Problem(f, n, "import", f"{python_name}: {message}") for f, n in places]
    if lone_flags:
        all_flags |= project_flags(helps)
        problems += [
            Problem(f, n, "flag", f"{flag} is an option of none of the project's commands")
            for f, n, flag in lone_flags
            if flag not in all_flags
        ]
    return sorted(set(problems), key=lambda p: (p.file, p.line, p.kind, p.message))


def project_flags(helps: HelpCache) -> set[str]:
    """The flags of every ``trl-drgrpo`` subcommand and of the ``analyze`` commands."""
    from trl_drgrpo.analysis.cli import build_parser
    from trl_drgrpo.cli import COMMANDS

    entry: Entry = ("module", f"{PACKAGE}.cli")
    flags = {"--help", "--version"}
    for command in COMMANDS:
        flags |= helps.flags(entry, [command])
    for action in build_parser()._actions:
        for sub in getattr(action, "choices", None) or {}:
            flags |= helps.flags(entry, ["analyze", sub])
    return flags


def unreachable_pages(root: Path = REPO_ROOT, start: str = "README.md") -> list[str]:
    """Markdown pages under docs/ that no chain of links from ``start`` reaches."""
    seen, todo = set(), [Path(os.path.normpath((root / start).absolute()))]
    while todo:
        page = todo.pop()
        if page in seen or not page.is_file():
            continue
        seen.add(page)
        for _, target in parse_markdown(page.read_text(encoding="utf-8")).links:
            file_part = target.partition("#")[0]
            if file_part.endswith(".md") and not is_external(file_part):
                todo.append(Path(os.path.normpath((page.parent / file_part).absolute())))
    pages = sorted(Path(os.path.normpath(p.absolute())) for p in (root / "docs").rglob("*.md"))
    return [str(p.relative_to(root.absolute())) for p in pages if p not in seen]


def documents(root: Path = REPO_ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    files = [Path(a) for a in args] or documents()
    problems = check(files)
    if not args:
        problems += [Problem(p, 1, "link", "not reachable from README.md") for p in unreachable_pages()]
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {len(files)} file(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
