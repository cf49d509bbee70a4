"""The binaries' tables name every installed binary and only flags the binaries define.

README has the one-line table (each binary linked to its module in `yt8m_sdnn/cli/`);
docs/usage.md has the table of main flags and the paragraph of flags shared by the
binaries that train. One subprocess lists the flags of every binary.
"""

from __future__ import annotations

import configparser
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
USAGE = ROOT / "docs" / "usage.md"

# Imports every binary's module in one process and prints the flags each defines: the
# flags a module adds on import are removed again before the next one, whose shared
# flag sets (yt8m_sdnn/cli/flag_sets.py) then define them anew.
_LIST_FLAGS = """
import importlib, json, sys
from absl import flags
FLAGS = flags.FLAGS
defined = {}
for script, module in json.loads(sys.argv[1]).items():
  before = set(FLAGS)
  importlib.import_module(module)
  added = set(FLAGS) - before
  defined[script] = sorted(added)
  for name in added:
    delattr(FLAGS, name)
print(json.dumps(defined))
"""


def _console_scripts() -> dict[str, str]:
  """Console script name → its module in `yt8m_sdnn.cli`, from setup.cfg."""
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  scripts = {}
  for line in config["options.entry_points"]["console_scripts"].strip().splitlines():
    name, target = (part.strip() for part in line.split("="))
    scripts[name] = target.split(":")[0]
  return scripts


@pytest.fixture(scope="module")
def defined() -> dict[str, set[str]]:
  """Console script → the flags its module defines."""
  result = subprocess.run([sys.executable, "-c", _LIST_FLAGS, json.dumps(_console_scripts())],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return {script: set(names) for script, names in
          json.loads(result.stdout.strip().splitlines()[-1]).items()}


def test_readmes_table_has_every_binary_once_linked_to_its_module():
  scripts = _console_scripts()
  readme = (ROOT / "README.md").read_text()
  rows = re.findall(r"^\| \[`([a-z0-9-]+)`\]\(([^)]+)\) \| (.+) \|$", readme, re.MULTILINE)
  names = [name for name, _, _ in rows]
  assert sorted(names) == sorted(scripts), "README's binaries table and setup.cfg disagree"
  for name, link, description in rows:
    # The console script runs yt8m_sdnn.cli.X:run; the table links to that module's file.
    assert link == scripts[name].replace(".", "/") + ".py", (name, link)
    assert (ROOT / link).is_file() and (ROOT / "bin" / pathlib.Path(link).name).is_file(), name
    assert len(description) <= 160, f"{name}: README's table keeps one short line a binary"


def test_every_flag_the_usage_table_names_exists_in_its_binary(defined):
  scripts = _console_scripts()
  usage = USAGE.read_text()
  table = {}
  for row in re.finditer(r"^\| `([a-z0-9-]+)` \|.*\|$", usage, re.MULTILINE):
    # Cells split on unescaped pipes (`\|` inside a cell is Markdown's literal pipe).
    cells = re.split(r"(?<!\\)\|", row.group(0))
    table[row.group(1)] = set(re.findall(r"--(?:\[no\])?([a-z][a-z0-9_]*)", cells[3]))
  assert set(table) == set(scripts), "docs/usage.md's binaries table and setup.cfg disagree"
  assert all(table.values()), "every binary's row names its main flags"
  missing = {script: sorted(names - defined[script])
             for script, names in table.items() if names - defined[script]}
  assert not missing, f"docs/usage.md names flags these binaries lack: {missing}"


def test_the_shared_flags_paragraph_names_flags_its_binaries_take(defined):
  usage = USAGE.read_text()
  paragraph = usage[usage.index("Binaries that train ("):]
  paragraph = paragraph[:paragraph.index("\n\n")]
  checked = 0
  for sentence in re.split(r"\.\s", paragraph):
    for script in re.findall(r"`((?:yt8m|image)-[a-z-]+)[ `]", sentence):
      lacking = set(re.findall(r"--([a-z][a-z0-9_]*)", sentence)) - defined[script]
      assert not lacking, f"{script} lacks {sorted(lacking)} that docs/usage.md says it takes"
      checked += 1
  assert checked >= 6, paragraph
