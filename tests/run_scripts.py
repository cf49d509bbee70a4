"""Runs several of the package's entry scripts in ONE process, as a user would run each.

`python tests/run_scripts.py CALLS_JSON` takes a list of [PATH, ARGS] calls and runs each
PATH (a `bin/X.py` file or an installed console script) with `runpy.run_path(PATH,
run_name="__main__")` and `sys.argv = [PATH, *ARGS]`, the way the interpreter runs a
script; it prints one JSON list of {"stdout", "stderr", "exit"}, one a call. Between scripts the flags the binary
defined (those of `yt8m_sdnn` modules) are deleted and its `yt8m_sdnn.cli` module is
dropped, so the next binary defines its own afresh, as in a new process: one
TensorFlow start-up instead of one a script (the tests' largest cost).

Only for binaries that end before their real work (`--help`, flag errors).
"""

import contextlib
import io
import json
import runpy
import sys
import traceback

from absl import app, flags
from absl import logging  # noqa: F401  (its flags stay defined across scripts)

FLAGS = flags.FLAGS
KEPT_MODULES = ("yt8m_sdnn.cli", "yt8m_sdnn.cli.flag_sets", "yt8m_sdnn.cli.runner")


def _ours(name: str) -> bool:
  module = FLAGS.find_module_defining_flag(name) or ""
  return module.startswith("yt8m_sdnn") or module.startswith("bin")


def main() -> None:
  calls = json.loads(sys.argv[1])
  app.define_help_flags()
  results = []
  for path, args in calls:
    before = set(FLAGS)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      sys.argv = [path, *args]
      try:
        runpy.run_path(path, run_name="__main__")
      except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
      except BaseException:  # pylint: disable=broad-except
        err.write(traceback.format_exc())
        status = "raised"
    results.append({"stdout": out.getvalue(), "stderr": err.getvalue(), "exit": status})
    for name in [name for name in set(FLAGS) - before if _ours(name)]:
      delattr(FLAGS, name)
    for module in [m for m in sys.modules if m.startswith("yt8m_sdnn.cli.")
                   and m not in KEPT_MODULES]:
      del sys.modules[module]
  sys.stdout.write("\n" + json.dumps(results) + "\n")


if __name__ == "__main__":
  main()
