"""The one-way house: imports point down the layers, no cycles, binaries run as files.

Layers, lowest first (README "Architecture"). A module may import its own layer and the
ones below; `experiments/` sits on top of the library and nothing in the library
imports it; `cli/` (the binaries) sits on top of everything; nothing in `yt8m_sdnn/`
imports `bin/` (thin files that run `cli/`) or `bench/`.
"""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

from conftest import run_scripts

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (layer, module prefixes), lowest first. A prefix names a module or a package.
LAYERS = [
    ("base", ["yt8m_sdnn.artifacts", "yt8m_sdnn.locking", "yt8m_sdnn.distribute",
              "yt8m_sdnn.startup", "yt8m_sdnn.interrupts"]),
    ("data", ["yt8m_sdnn.data", "yt8m_sdnn.metrics"]),
    ("subclass", ["yt8m_sdnn.subclass"]),
    ("losses", ["yt8m_sdnn.losses"]),
    ("models", ["yt8m_sdnn.models"]),
    ("neglection", ["yt8m_sdnn.neglection"]),
    ("training", ["yt8m_sdnn.backup", "yt8m_sdnn.callbacks", "yt8m_sdnn.early_stopping",
                  "yt8m_sdnn.evaluation", "yt8m_sdnn.export", "yt8m_sdnn.model_files",
                  "yt8m_sdnn.prediction", "yt8m_sdnn.training",
                  "yt8m_sdnn.subclass_training"]),
    ("image", ["yt8m_sdnn.image"]),
    ("package", ["yt8m_sdnn"]),  # the package's own __init__: the public names
    ("experiments", ["yt8m_sdnn.experiments"]),
    ("cli", ["yt8m_sdnn.cli"]),  # the binaries: flag sets, the runner, one module a binary
]


def _modules() -> dict[str, pathlib.Path]:
  found = {}
  for path in sorted((ROOT / "yt8m_sdnn").rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    found[name] = path
  return found


def _layer(module: str) -> int:
  best, rank = -1, None
  for index, (_, prefixes) in enumerate(LAYERS):
    for prefix in prefixes:
      if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
        best, rank = len(prefix), index
  assert rank is not None, f"{module} is in no layer of {__file__}: add it to LAYERS"
  return rank


def _imports(name: str, path: pathlib.Path, modules) -> set[str]:
  """Project modules `name` imports anywhere in its body (inside functions too)."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
      targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                 for alias in node.names]
    else:
      continue
    found.update(t for t in targets if t.split(".")[0] in ("yt8m_sdnn", "bin", "bench"))
  found.discard(name)
  return found


def _graph():
  modules = _modules()
  return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def test_imports_point_down_the_layers():
  _, graph = _graph()
  upward = []
  for name, targets in graph.items():
    for target in targets:
      if target.split(".")[0] != "yt8m_sdnn":
        upward.append(f"{name} imports {target} (bin/ and bench/ sit above the library)")
      elif _layer(target) > _layer(name):
        upward.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {target} "
                      f"({LAYERS[_layer(target)][0]})")
  assert not upward, "\n".join(sorted(upward))


def _cycle(graph) -> list[str] | None:
  """One import cycle among the project's modules, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for target in sorted(graph.get(node, ())):
      # `from yt8m_sdnn import x` names the package; the package's own __init__ is
      # an edge only for modules that import the package itself.
      if target not in graph:
        continue
      if state.get(target) == "open":
        return stack[stack.index(target):] + [target]
      if target not in state:
        found = visit(target)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_no_import_cycles():
  _, graph = _graph()
  # `from yt8m_sdnn import models` imports `yt8m_sdnn` first; the package's __init__
  # imports submodules for the public names, which is not a cycle of the modules.
  graph = {name: {t for t in targets if t != "yt8m_sdnn"} for name, targets in graph.items()}
  cycle = _cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


BINARIES = sorted(p for p in (ROOT / "bin").glob("*.py") if p.name != "__init__.py")


def test_no_binary_shadows_the_package():
  names = {p.stem for p in (ROOT / "bin").glob("*.py")}
  assert not names & {"yt8m_sdnn", "tensorflow", "keras", "numpy", "absl"}


@pytest.fixture(scope="module")
def help_of_the_files():
  """`python bin/X.py --help` for every binary, run as files, in one process."""
  return run_scripts(BINARIES, "--help", env=dict(os.environ, PYTHONPATH=str(ROOT),
                                                  TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("binary", BINARIES, ids=lambda p: p.name)
def test_binary_runs_as_a_file(binary, help_of_the_files):
  """`python bin/X.py --help` from a checkout, as the YT8M starter's train.py is run."""
  result = help_of_the_files[str(binary)]
  # absl ends --help with exit status 1 (its HelpFlag), as the starter's binaries did.
  assert result["exit"] in (0, 1), result["stderr"][-2000:]
  assert "Traceback" not in result["stderr"], result["stderr"][-2000:]
  assert f"{binary.stem}.py:" in result["stdout"] and "flags:" in result["stdout"], (
      result["stdout"][:500])
  assert "--" in result["stdout"]
  if binary.stem in ("yt8m_train", "yt8m_pipeline"):  # --help shows the shared flag sets too
    for flag in ("--feature_names", "--num_classes", "--batch_size", "--loss", "--strategy",
                 "--log_every", "--learning_rate", "--val_data"):
      assert f"  {flag}:" in result["stdout"], flag


# Where the registered Keras objects lived before the losses became a package.
OLD_MODULES = {"yt8m_sdnn.losses.cross_entropy": "yt8m_sdnn.losses",
               "yt8m_sdnn.losses.reweighted": "yt8m_sdnn.reweighted_losses"}


def _with_old_module_names(path: pathlib.Path) -> int:
  """Rewrites a `.keras` file's config as the previous layout wrote it; returns the edits."""
  import zipfile  # pylint: disable=import-outside-toplevel
  with zipfile.ZipFile(path) as archive:
    entries = {name: archive.read(name) for name in archive.namelist()}
  config = entries["config.json"].decode()
  edits = sum(config.count(f'"module": "{new}"') for new in OLD_MODULES)
  for new, old in OLD_MODULES.items():
    config = config.replace(f'"module": "{new}"', f'"module": "{old}"')
  entries["config.json"] = config.encode()
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in entries.items():
      archive.writestr(name, data)
  return edits


def test_models_saved_by_the_previous_layout_still_load(tmp_path):
  """Registered names are unchanged, so old `.keras` files load by them (fresh process)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn import losses, models  # pylint: disable=import-outside-toplevel
  unit_to_class = [0, 1, 2, 2]
  logits_model, class_model = models.build_subclass_model("logistic", 6, unit_to_class, 3)
  logits_model.compile(optimizer="adam", loss=losses.SubclassCrossEntropy(
      unit_to_class, from_logits=True, gamma_negative=2.0))
  baseline = models.build_model("logistic", 6, 3)
  baseline.compile(optimizer="adam", loss=losses.AsymmetricLoss())
  features = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
  expected = {}
  for name, model in (("subclass", logits_model), ("classes", class_model),
                      ("baseline", baseline)):
    path = tmp_path / f"{name}.keras"
    model.save(path)
    assert _with_old_module_names(path) == (0 if name == "classes" else 1)
    expected[name] = model.predict(features, verbose=0)
  np.save(tmp_path / "features.npy", features)
  script = (
      "import sys, numpy as np, keras, yt8m_sdnn\n"
      f"features = np.load({str(tmp_path / 'features.npy')!r})\n"
      "for name in ('subclass', 'classes', 'baseline'):\n"
      f"  model = keras.saving.load_model({str(tmp_path)!r} + f'/{{name}}.keras')\n"
      f"  np.save({str(tmp_path)!r} + f'/{{name}}.npy', model.predict(features, verbose=0))\n"
      "  print(name, type(model.loss).__name__)\n")
  env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "subclass SubclassCrossEntropy" in result.stdout
  assert "baseline AsymmetricLoss" in result.stdout
  for name, values in expected.items():
    np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), values, rtol=1e-6)


def test_public_names_import_from_the_package_top():
  import yt8m_sdnn  # pylint: disable=import-outside-toplevel
  from yt8m_sdnn import NeglectionMonitor, SubclassCrossEntropy, SubclassMerge  # noqa: F401  pylint: disable=import-outside-toplevel
  missing = [name for name in yt8m_sdnn.__all__ if not hasattr(yt8m_sdnn, name)]
  assert not missing and "SubclassCrossEntropy" in yt8m_sdnn.__all__
