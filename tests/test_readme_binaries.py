"""README's binaries table and flag lists name flags the binaries really define."""

from __future__ import annotations

import configparser
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Imports every binary in one process and prints the flags each defines: the flags a
# binary adds on import are removed again before the next one, whose shared flag
# sets (bin/flag_sets.py) then define them anew.
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
  """Console script name → its `bin.` module, from setup.cfg."""
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  scripts = {}
  for line in config["options.entry_points"]["console_scripts"].strip().splitlines():
    name, target = (part.strip() for part in line.split("="))
    scripts[name] = target.split(":")[0]
  return scripts


def test_every_flag_readme_names_exists_in_its_binary():
  scripts = _console_scripts()
  result = subprocess.run([sys.executable, "-c", _LIST_FLAGS, json.dumps(scripts)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  defined = json.loads(result.stdout.strip().splitlines()[-1])
  readme = (ROOT / "README.md").read_text()

  table = {}
  for row in re.finditer(r"^\| `([a-z0-9-]+)` \|(.*)\|(.*)\|$", readme, re.MULTILINE):
    table[row.group(1)] = set(re.findall(r"--(?:\[no\])?([a-z][a-z0-9_]*)", row.group(3)))
  assert set(table) == set(scripts), "README's binaries table and setup.cfg disagree"
  missing = {script: sorted(names - set(defined[script]))
             for script, names in table.items() if names - set(defined[script])}
  assert not missing, f"README names flags these binaries lack: {missing}"

  # The paragraph after the table: each sentence's flags exist in the binaries it names.
  paragraph = readme[readme.index("Binaries that train ("):]
  paragraph = paragraph[:paragraph.index("\n\n")]
  checked = 0
  for sentence in re.split(r"\.\s", paragraph):
    named = re.findall(r"`(yt8m-[a-z-]+)[ `]", sentence)
    for script in named:
      lacking = set(re.findall(r"--([a-z][a-z0-9_]*)", sentence)) - set(defined[script])
      assert not lacking, f"{script} lacks {sorted(lacking)} that README says it takes"
      checked += 1
  assert checked >= 6, paragraph
