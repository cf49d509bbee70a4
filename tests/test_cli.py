"""The binaries' shared pieces, in process: recipes named and recorded, starter-flag hints,
the --num_classes check against the labels of the first shard."""

from __future__ import annotations

import logging

import pytest

from yt8m_sdnn import training
from yt8m_sdnn.cli import flag_sets, runner
from yt8m_sdnn.data import reader


def test_the_paper_recipe_is_the_train_config_defaults():
  paper = training.recipe(training.PAPER_RECIPE).settings
  config = training.TrainConfig(train_dir="")
  assert paper == {key: getattr(config, key) for key in training.RECIPE_KEYS}
  assert paper["num_epochs"] == 5 and paper["learning_rate"] == 0.001


def test_the_early_stopped_recipe_names_every_value_that_is_not_the_paper_s():
  recipe = training.recipe_for("logistic", early_stopped=True)
  assert recipe.name == "early-stopped logistic"
  assert recipe.settings["num_epochs"] == training.EARLY_STOPPED_NUM_EPOCHS
  line = recipe.describe(dict(recipe.settings, learning_rate=0.5))
  assert line.startswith("recipe early-stopped logistic: ")
  assert "learning_rate 0.5 (given; paper 0.001)" in line
  assert "learning_rate_decay 1 (recipe; paper 0.95)" in line
  assert "weight_decay 0 (recipe; paper 0.0005)" in line
  assert "num_epochs 200 (recipe; paper 5)" in line
  assert "optimizer" not in line  # adam in both
  paper = training.recipe_for("cnn", early_stopped=False)
  assert paper.describe(paper.settings) == "recipe paper: every value the paper's"
  assert paper.describe(dict(paper.settings, num_epochs=2)) == (
      "recipe paper: num_epochs 2 (given; paper 5)")
  with pytest.raises(ValueError, match="early-stopped"):
    training.recipe("tuned")


def test_starter_flags_with_another_name_here_get_a_hint():
  hints = runner.starter_flag_hints(
      ["yt8m-train", "--start_new_model", "--train_dir=x", "--noregularization_penalty",
       "--", "--label_loss=x"])
  assert len(hints) == 2
  assert "--start_new_model" in hints[0] and "--overwrite" in hints[0]
  assert "--regularization_penalty" in hints[1] and "--weight_decay" in hints[1]
  assert runner.starter_flag_hints(["yt8m-train", "--train_dir=x", "-v=1"]) == []


def test_num_classes_far_from_the_labels_of_the_first_shard_is_warned(synthetic_dir, caplog):
  config = reader.ReaderConfig(str(synthetic_dir / "train"), num_classes=4716, batch_size=64)
  with caplog.at_level(logging.WARNING):
    flag_sets.warn_about_num_classes(config)
  assert "2017 vocabulary" in caplog.text and "--num_classes=3862" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    flag_sets.warn_about_num_classes(reader.ReaderConfig(
        str(synthetic_dir / "train"), num_classes=100, batch_size=64))
  assert "is --num_classes right" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    flag_sets.warn_about_num_classes(reader.ReaderConfig(
        str(synthetic_dir / "train"), num_classes=12, batch_size=64))
  assert not caplog.text
