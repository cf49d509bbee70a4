"""README and docs/ say what is true: links resolve, commands name real binaries, flags,
files and make targets, and the figures redraw from the committed result files.

One subprocess (TensorFlow starts once) lists the flags of every binary and of every
absl program under bench/; everything else reads files.
"""

from __future__ import annotations

import configparser
import functools
import glob
import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED_DATA = ROOT.parent / "shared" / "data"
MARKDOWN = [README] + sorted((ROOT / "docs").rglob("*.md"))

# absl's own flags, which every absl program accepts.
ABSL_FLAGS = frozenset({"help", "helpfull", "helpshort", "helpxml", "flagfile", "undefok"})
# What README's command blocks may run besides the package's binaries and modules.
README_COMMANDS = {"make", "pip", "python", "python3", ".", "source"}
# `python -m` modules that are tools, not this checkout's.
TOOL_MODULES = {"pip", "pytest", "venv"}

# Imports each module in this one process and prints the absl flags its program takes:
# the flags a module adds on import (or through its `define_flags()`, for programs that
# define them only when run) are removed again before the next import, whose shared
# flag sets then define them anew. bench modules are imported afresh each time, since
# one program may import another's flags.
_LIST_FLAGS = """
import importlib, json, sys
from absl import flags
FLAGS = flags.FLAGS
defined = {}
for module in json.loads(sys.argv[1]):
  for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
    del sys.modules[name]
  before = set(FLAGS)
  imported = importlib.import_module(module)
  if set(FLAGS) == before and callable(getattr(imported, "define_flags", None)):
    imported.define_flags()
  added = set(FLAGS) - before
  defined[module] = sorted(added)
  for name in added:
    delattr(FLAGS, name)
print(json.dumps(defined))
"""


def console_scripts() -> dict[str, str]:
  """Console script name → the module it runs, from setup.cfg."""
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
  return {name.strip(): target.strip().split(":")[0]
          for name, target in (line.split("=") for line in lines)}


def _module_path(module: str) -> pathlib.Path | None:
  """The file of a module of this checkout, or None."""
  base = ROOT.joinpath(*module.split("."))
  for path in (base.with_suffix(".py"), base / "__init__.py"):
    if path.is_file():
      return path
  return None


@functools.lru_cache(maxsize=None)
def defined_flags() -> dict[str, frozenset[str]]:
  """Module → the flags its program takes.

  absl programs (every binary, every bench/ program defining absl flags) are listed in
  one subprocess; argparse programs are read from their `add_argument("--...")` calls.
  """
  modules = sorted(set(console_scripts().values()))
  modules += [f"bench.{path.stem}" for path in sorted((ROOT / "bench").glob("*.py"))
              if "flags.DEFINE" in path.read_text()]
  result = subprocess.run([sys.executable, "-c", _LIST_FLAGS, json.dumps(modules)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  listed = json.loads(result.stdout.strip().splitlines()[-1])
  found = {module: frozenset(names) | ABSL_FLAGS for module, names in listed.items()}
  for path in sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "yt8m_sdnn").rglob("*.py")):
    source = path.read_text()
    if "add_argument(" in source:
      module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
      found[module] = frozenset(re.findall(r"add_argument\(\s*[\"']--([a-z0-9_]+)", source)) | {
          "help"}
  return found


@functools.lru_cache(maxsize=None)
def make_targets() -> frozenset[str]:
  text = (ROOT / "Makefile").read_text()
  return frozenset(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.MULTILINE))


# ---------------------------------------------------------------------------------------
# Markdown: headings, links, code.

FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# Inline code, which may run over lines within a paragraph.
INLINE_CODE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")


def _without_fences(text: str) -> str:
  """The text with fenced blocks blanked; line numbers stay as they were."""
  return FENCE.sub(lambda match: "\n" * match.group(0).count("\n"), text)


def github_slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text
  return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(path: pathlib.Path) -> frozenset[str]:
  """The anchors of a Markdown file's headings (repeats numbered as GitHub does)."""
  found, seen = set(), {}
  for line in _without_fences(path.read_text()).splitlines():
    heading = re.match(r"#{1,6} (.*)", line)
    if heading:
      slug = github_slug(heading.group(1))
      count = seen.get(slug, 0)
      seen[slug] = count + 1
      found.add(slug if count == 0 else f"{slug}-{count}")
  return frozenset(found)


def _links(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, target) of every Markdown link and image outside code."""
  text = INLINE_CODE.sub(lambda match: "\n" * match.group(0).count("\n"),
                         _without_fences(path.read_text()))
  return [(number, target) for number, line in enumerate(text.splitlines(), 1)
          for target in re.findall(r"\]\(([^)\s]+)\)", line)]


def _relative(path: pathlib.Path) -> str:
  return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", MARKDOWN, ids=_relative)
def test_every_relative_link_resolves(path):
  broken = []
  for number, target in _links(path):
    if re.match(r"[a-z]+:", target):
      continue  # http(s), mailto: not fetched
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    where = f"{_relative(path)}:{number}: {target}"
    if ROOT not in resolved.parents and resolved != ROOT:
      broken.append(f"{where}: outside the repository (broken on GitHub)")
    elif not resolved.exists():
      broken.append(f"{where}: no such file")
    elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
      broken.append(f"{where}: {resolved.name} has no heading with that anchor")
  assert not broken, "\n".join(broken)


def test_links_and_anchors_are_found_as_github_makes_them(tmp_path):
  assert github_slug("Which merge rule? The summed odds (beyond the paper)") == (
      "which-merge-rule-the-summed-odds-beyond-the-paper")
  assert github_slug("Early training: reruns (`--deterministic`, 3 seeds)") == (
      "early-training-reruns---deterministic-3-seeds")
  assert github_slug("θ against validation AP") == "θ-against-validation-ap"
  page = tmp_path / "page.md"
  page.write_text("# Top\n\n[a](x.md) `[b](y.md)` [`c`](z.md#top)\n\n```sh\n[d](w.md)\n# Not\n```\n"
                  "## Top\n")
  # Links in code are not links, code in a link's text is; a repeated heading is numbered.
  assert _links(page) == [(3, "x.md"), (3, "z.md#top")]
  assert anchors(page) == {"top", "top-1"}


def test_readme_leads_with_the_forest_plot_and_stays_short():
  lines = README.read_text().splitlines()
  assert len(lines) <= 300, f"README has {len(lines)} lines"
  assert "](docs/converged_gap_differences.png)" in "\n".join(lines[:40])
  assert "## Use it in your own model" in lines  # tests/test_keras_reuse.py runs its script


# ---------------------------------------------------------------------------------------
# Commands: README's blocks strictly, docs/'s blocks and inline commands for what they name.


def _shell_commands(block: str) -> list[list[str]]:
  """The simple commands of a shell block: continuations joined, heredoc bodies, comments
  and leading VAR=value assignments dropped, split at && || ; |."""
  commands, heredoc = [], None
  for line in block.replace("\\\n", " ").splitlines():
    if heredoc:
      heredoc = None if line.strip() == heredoc else heredoc
      continue
    opener = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
    if opener:
      heredoc, line = opener.group(1), line[:opener.start()]
    current: list[str] = []
    for word in shlex.split(line, comments=True) + ["&&"]:
      if word in ("&&", "||", ";", "|"):
        while current and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", current[0]):
          current = current[1:]
        if current:
          commands.append(current)
        current = []
      else:
        current.append(word)
  return commands


def _program(words: list[str]) -> tuple[str, str | None, list[str]]:
  """(kind, target, arguments): kind is binary, module, file, make or other."""
  name = words[0].rsplit("/", 1)[-1]
  scripts = console_scripts()
  if name in scripts:
    return "binary", scripts[name], words[1:]
  if name in ("python", "python3"):
    arguments = words[1:]
    if arguments[:1] == ["-m"] and len(arguments) > 1:
      return "module", arguments[1], arguments[2:]
    if arguments and arguments[0].endswith(".py"):
      return "file", arguments[0], arguments[1:]
    return "other", name, arguments  # python -c, python - (a script on stdin)
  if name == "make":
    return "make", None, words[1:]
  return "other", words[0], words[1:]


def _flags(arguments: list[str]) -> list[str]:
  names = []
  for argument in arguments:
    argument = argument.strip("[]")
    if argument.startswith("--") and len(argument) > 2:
      names.append(argument[2:].split("=", 1)[0])
  return names


def _values(arguments: list[str]) -> list[str]:
  """What the arguments name: flag values and positional words, comma lists split."""
  values = []
  for argument in arguments:
    if argument.startswith("--"):
      argument = argument.split("=", 1)[1] if "=" in argument else ""
    elif argument.startswith("-"):
      continue
    values += [part for part in argument.split(",") if part]
  return values


def check_command(words: list[str], strict: bool) -> list[str]:
  """What is wrong with one command: an unknown binary, module, flag, file or target.

  Paths under ../shared are left to `shared_paths`. `strict` (README) also refuses
  commands that are neither this package's nor in `README_COMMANDS`, and names of this
  repository's files that do not exist.
  """
  kind, target, arguments = _program(words)
  command = " ".join(words)
  if kind == "make":
    return [f"{command}: no make target {name!r}" for name in arguments
            if not name.startswith("-") and "=" not in name and name not in make_targets()]
  if kind == "other":
    return [f"{command}: not a command README may run"] if (
        strict and target not in README_COMMANDS) else []
  if re.search(r"(^|[./])[A-Z]+(\.py)?$", target):
    return []  # a placeholder: `python bin/X.py`, `python -m yt8m_sdnn.cli.X`
  module = target
  if kind == "file":
    if not (ROOT / target).is_file():
      return [f"{command}: no file {target}"]
    module = ".".join(pathlib.Path(target).with_suffix("").parts)
  if module.split(".")[0] in TOOL_MODULES:
    return []
  if _module_path(module) is None:
    return [f"{command}: no module {module} in this checkout"]
  if module.startswith("bin."):
    module = "yt8m_sdnn.cli." + module[len("bin."):]
  known = defined_flags().get(module, ABSL_FLAGS)
  problems = [f"{command}: {module} takes no flag --{name}" for name in _flags(arguments)
              if name not in known and not (name.startswith("no") and name[2:] in known)]
  if strict:
    top_level = {path.name for path in ROOT.iterdir() if not path.name.startswith(".")}
    problems += [f"{command}: {value} does not exist in the repository"
                 for value in _values(arguments)
                 if value.split("/")[0] in top_level and not glob.glob(str(ROOT / value))]
  return problems


def shared_paths(words: list[str]) -> list[str]:
  """The ../shared paths (globs) a command names."""
  return [value for value in _values(_program(words)[2]) if value.startswith("../shared/")]


def _blocks(path: pathlib.Path) -> list[tuple[str, str]]:
  return [(match.group(1), match.group(2)) for match in FENCE.finditer(path.read_text())]


def _readme_commands() -> list[list[str]]:
  commands = []
  for language, block in _blocks(README):
    assert language in ("sh", "bash", "python"), f"README block of language {language!r}"
    if language != "python":
      commands += _shell_commands(block)
  return commands


COMMAND_START = re.compile(
    r"^(?:\.venv/bin/)?(?:python3? (?:-m \S+|\S+\.py)|(?:yt8m|image)-[a-z-]+|make)(?:\s|$)")


def _inline_commands(path: pathlib.Path) -> list[list[str]]:
  """Commands written as inline code (`python -m bench.X --flag ...`, `yt8m-train ...`)."""
  commands = []
  for match in INLINE_CODE.finditer(_without_fences(path.read_text())):
    text = " ".join(match.group(1).split())
    if COMMAND_START.match(text):
      try:
        commands += _shell_commands(text)
      except ValueError:  # an unbalanced quote in prose: not a command
        continue
  return commands


def test_readme_command_blocks_name_real_binaries_flags_files_and_targets():
  commands = _readme_commands()
  kinds = {_program(words)[0] for words in commands}
  assert len(commands) >= 12 and {"binary", "make"} <= kinds, commands
  problems = [problem for words in commands for problem in check_command(words, strict=True)]
  assert not problems, "\n".join(problems)


def test_readme_names_shared_files_that_exist():
  paths = sorted({path for words in _readme_commands() for path in shared_paths(words)})
  assert paths, "README's quickstart names no real shards"
  if not SHARED_DATA.is_dir():
    pytest.skip(f"{SHARED_DATA} is absent: the real shards are not checked")
  missing = [path for path in paths if not glob.glob(str(ROOT / path))]
  assert not missing, f"README names files ../shared does not have: {missing}"


@pytest.mark.parametrize("path", MARKDOWN[1:], ids=_relative)
def test_docs_commands_name_real_binaries_flags_and_targets(path):
  commands = _inline_commands(path)
  for language, block in _blocks(path):
    if language in ("sh", "bash"):
      commands += _shell_commands(block)
  problems = [problem for words in commands for problem in check_command(words, strict=False)]
  if SHARED_DATA.is_dir():
    problems += [f"{' '.join(words)}: {value} matches no file" for words in commands
                 for value in shared_paths(words) if not glob.glob(str(ROOT / value))]
  assert not problems, "\n".join(problems)


def test_every_binary_named_in_code_exists():
  scripts = console_scripts()
  unknown = set()
  for path in MARKDOWN:
    for match in INLINE_CODE.finditer(path.read_text()):
      name = re.match(r"((?:yt8m|image)-[a-z-]*[a-z])(?=\s|$|')", match.group(1))
      if name and name.group(1) not in scripts:
        unknown.add(f"{_relative(path)}: {name.group(1)}")
  assert not unknown, sorted(unknown)


def test_the_command_checks_catch_what_they_should():
  flags = defined_flags()
  assert {"train_data", "val_data", "subclass_plan"} <= flags["yt8m_sdnn.cli.yt8m_train"]
  assert "grid" in flags["bench.evidence_converged"] and "budget_s" in flags["bench.device_run"]
  assert "output_dir" in flags["yt8m_sdnn.experiments.figures"]
  assert _shell_commands("A=1 yt8m-eval --x=1 \\\n  --y 'a b' && make demo # note\n") == [
      ["yt8m-eval", "--x=1", "--y", "a b"], ["make", "demo"]]
  assert _shell_commands("python - <<'PY'\nimport os\nPY\nmake test\n") == [
      ["python", "-"], ["make", "test"]]
  assert check_command(["yt8m-eval", "--no_such_flag=1"], strict=True)
  assert check_command(["python", "-m", "bin.yt8m_train", "--train_dirr=/tmp/x"], strict=False)
  assert not check_command(["python", "bin/yt8m_train.py", "--train_dir=/tmp/x"], strict=True)
  assert check_command(["make", "no_such_target"], strict=False)
  assert check_command(["curl", "example.org"], strict=True)
  assert check_command(["yt8m-train", "--subclass_plan=bench/no_such.npz"], strict=True)


# ---------------------------------------------------------------------------------------
# Figures: drawn from the committed files alone, and the numbers the docs quote.


def _png_size(data: bytes) -> tuple[int, int]:
  assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
  return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_make_figures_redraws_the_committed_pngs_from_committed_files(tmp_path):
  pytest.importorskip("matplotlib")
  from yt8m_sdnn.experiments import figures  # pylint: disable=import-outside-toplevel
  assert "figures:" in (ROOT / "Makefile").read_text()
  paths = figures.draw_all(str(tmp_path))
  assert [pathlib.Path(path).name for path in paths] == list(figures.FIGURE_FILES)
  for path in paths:
    committed = ROOT / "docs" / pathlib.Path(path).name
    assert committed.is_file(), f"{committed} is not committed: run `make figures`"
    # Same pixel size as the committed PNG: a figure whose rows changed was not redrawn.
    assert _png_size(pathlib.Path(path).read_bytes()) == _png_size(committed.read_bytes()), (
        f"{committed.name} differs in size from a fresh drawing: run `make figures`")
  assert not list(tmp_path.glob(".*.tmp*")), "a temporary file was left behind"


def test_a_missing_result_file_is_named(tmp_path):
  from yt8m_sdnn.experiments import figures  # pylint: disable=import-outside-toplevel
  with pytest.raises(FileNotFoundError, match="converged_logistic.json"):
    figures.forest_families(str(tmp_path))


def _normalized(text: str) -> str:
  return text.replace("**", "").replace("−", "-")


def test_the_docs_quote_every_interval_and_row_of_the_committed_results():
  from yt8m_sdnn.experiments import figures  # pylint: disable=import-outside-toplevel
  docs = _normalized("\n".join(path.read_text() for path in MARKDOWN))
  families = figures.forest_families()
  rows = [row for family in families for row in family.rows]
  # The three families hold every converged difference that has an interval.
  assert [len(family.rows) for family in families] == [14, 12, 8]
  headline = {(family.title.split(" (")[0], row.label): row for family in families
              for row in family.rows}
  # Hand-checked against the JSON files: the two headline intervals.
  lr = headline[("Logistic regression", "SLR − LR")]
  assert (round(lr.mean, 2), tuple(round(x, 2) for x in lr.interval)) == (-1.91, (-2.10, -1.72))
  moe = headline[("Mixture of experts, weight decay tuned per side", "SMoE − MoE")]
  assert (round(moe.mean, 2), tuple(round(x, 2) for x in moe.interval)) == (-1.19, (-1.37, -1.02))
  missing = []
  for row in rows:
    quoted = f"{row.mean:+.2f} [{row.interval[0]:+.2f}, {row.interval[1]:+.2f}]"
    if quoted.replace("+", "") not in docs.replace("+", ""):
      missing.append(f"{row.label} ({row.source}): {quoted}")
  for _, gaps in figures.row_gap_families():
    missing += [f"{gap.label}: {gap.mean:.2f} ± {gap.std:.2f}" for gap in gaps
                if f"{gap.mean:.2f} ± {gap.std:.2f}" not in docs]
  assert not missing, "the docs do not quote these committed results:\n" + "\n".join(missing)
