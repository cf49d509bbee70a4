"""The installed console scripts, as README tells users to run them: --help lists each
binary's own flags, and the install puts no top-level `bin` package in site-packages."""

from __future__ import annotations

import ast
import configparser
import pathlib
import sys

import pytest

from conftest import binary_env, run_scripts

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS_DIR = pathlib.Path(sys.executable).parent


def _console_scripts() -> dict[str, str]:
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
  return dict((part.strip() for part in line.split("=")) for line in lines)


def test_every_console_script_help_lists_its_own_flags():
  scripts = _console_scripts()
  missing = [s for s in scripts if not (SCRIPTS_DIR / s).exists()]
  if missing:
    pytest.skip(f"not installed beside {sys.executable}: {missing} (run `make venv`)")
  # The installed scripts themselves, all in one process (tests/run_scripts.py).
  env = {k: v for k, v in binary_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  outputs = run_scripts([SCRIPTS_DIR / s for s in scripts], "--help", env=env)
  results = {script: outputs[str(SCRIPTS_DIR / script)] for script in scripts}
  for script, result in results.items():
    assert "Traceback" not in result["stderr"], (script, result["stderr"][-2000:])
    assert result["exit"] in (0, 1), (script, result)  # absl's --help exits 1
    out = result["stdout"]
    # The binary's description, then its own flags (not absl's or TensorFlow's).
    source = ROOT / (scripts[script].split(":")[0].replace(".", "/") + ".py")
    doc = ast.get_docstring(ast.parse(source.read_text())).splitlines()[0]
    assert doc in out, (script, out[:500])
    assert "\nflags:\n" in out, (script, out[:500])
    flag_lines = [line for line in out.splitlines() if line.startswith("  --")]
    assert len(flag_lines) >= 2, (script, out[:1000])
    assert "--helpfull" not in "".join(flag_lines) and "--logtostderr" not in out, script
  # TensorFlow's C++ start-up lines stay hidden for the binaries.
  for start_up in ("oneDNN", "cuInit"):
    assert start_up not in outputs[""]["stderr"], outputs[""]["stderr"][:1000]
  train = results["yt8m-train"]["stdout"]
  for flag in ("--train_data", "--train_dir", "--val_data", "--learning_rate", "--loss",
               "--subclass_plan", "--feature_names", "--strategy"):
    assert f"  {flag}:" in train, flag


def test_no_top_level_bin_package_is_installed():
  from setuptools import find_packages  # pylint: disable=import-outside-toplevel
  config = configparser.ConfigParser()
  config.read(ROOT / "setup.cfg")
  include = config["options.packages.find"]["include"].split()
  packages = find_packages(str(ROOT), include=include)
  assert "yt8m_sdnn.cli" in packages
  assert not [p for p in packages if p == "bin" or p.startswith("bin.")], packages
  for target in _console_scripts().values():
    assert target.startswith("yt8m_sdnn.cli."), target
