"""Mistakes in flags are reported at once, naming the flag or file, before any work."""

import subprocess
import sys

import pytest

from conftest import ROOT, binary_env, run_calls
from yt8m_sdnn.data import vocabulary


CASES = [("yt8m_eval", "--eval_data"), ("yt8m_predict", "--input_data"),
         ("yt8m_train", "--eval_data")]


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
  """Each mistaken command, run as `bin/X.py` files in one process (`conftest.run_calls`)."""
  calls, dirs = [], []
  for binary, flag in CASES:
    tmp_path = tmp_path_factory.mktemp(binary)
    missing = tmp_path / "no_such_shards*.tfrecord"
    args = [f"{flag}={missing}", f"--train_dir={tmp_path / 'not_a_run'}"]
    if binary == "yt8m_predict":
      args.append(f"--output_file={tmp_path / 'out.csv'}")
    if binary == "yt8m_train":
      (tmp_path / "shards").mkdir()
      (tmp_path / "shards" / "train00.tfrecord").write_bytes(b"")
      args.append(f"--train_data={tmp_path / 'shards'}")  # exists; only --eval_data is wrong
    calls.append((ROOT / "bin" / f"{binary}.py", args))
    dirs.append(tmp_path)
  merge_dir = tmp_path_factory.mktemp("merge")
  calls.append((ROOT / "bin" / "yt8m_train.py",
                ["--subclass_merge=odds_sum", f"--train_data={merge_dir}",
                 f"--train_dir={merge_dir / 'run'}"]))
  dirs.append(merge_dir)
  results, _ = run_calls(calls)
  return list(zip(results, dirs))


@pytest.mark.parametrize("case", range(len(CASES)), ids=[" ".join(c) for c in CASES])
def test_a_mistyped_data_pattern_fails_before_any_model_is_read(case, refused):
  flag = CASES[case][1]
  result, tmp_path = refused[case]
  assert result["exit"] == 1, result
  # The data flag is named, not the missing train_dir: it was checked first.
  assert f"{flag}:" in result["stderr"] and "Traceback" not in result["stderr"], (
      result["stderr"][-1500:])
  assert not (tmp_path / "not_a_run").exists()


def test_vocabulary_errors_name_the_file_and_line(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}/absent.csv: no vocabulary file"):
    vocabulary.load_class_names(str(tmp_path / "absent.csv"))
  wrong = tmp_path / "wrong.csv"
  wrong.write_text("id,labels\nv1,3 4\n")
  with pytest.raises(ValueError, match=f"{wrong}: expected a header"):
    vocabulary.load_class_names(str(wrong))
  bad_id = tmp_path / "bad_id.csv"
  bad_id.write_text("Index,TrainVideoCount,Name\n0,10,Game\nx,5,Car\n")
  with pytest.raises(ValueError, match=f"{bad_id}: line 3: Index='x'"):
    vocabulary.load_class_names(str(bad_id))
  good = tmp_path / "good.csv"
  good.write_text("Index,TrainVideoCount,Name\n0,10,Game\n1,5,Car\n")
  assert vocabulary.load_class_names(str(good)) == {0: "Game", 1: "Car"}


def test_the_starter_flag_names_are_accepted():
  script = (
      "from absl import flags\n"
      "import yt8m_sdnn.cli.yt8m_train\n"
      "from yt8m_sdnn.cli import flag_sets\n"
      "flag_sets.define_starter_aliases()\n"
      "F = flags.FLAGS\n"
      "F(['yt8m-train', '--train_data_pattern=/data/train*', '--eval_data_pattern=/data/v*',\n"
      "   '--model=MoeModel', '--base_learning_rate=0.25', '--frame_features', '--train_dir=/t'])\n"
      "print(F.train_data, F.eval_data, F.model, F.learning_rate, F.frame_level)\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=binary_env(),
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-1500:]
  assert result.stdout.split() == ["/data/train*", "/data/v*", "moe", "0.25", "True"]


def test_a_merge_rule_without_a_subclass_model_is_refused(refused):
  result, tmp_path = refused[len(CASES)]
  assert result["exit"] == 1, result
  assert "--subclass_merge applies to a subclass model" in result["stderr"], (
      result["stderr"][-1500:])
  assert "--subclass_plan" in result["stderr"] and not (tmp_path / "run").exists()
