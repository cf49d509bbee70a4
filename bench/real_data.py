"""Where the real YT8M 2018 files are: $YT8M_DATA_DIR, else ../shared/data/yt8m-2018."""

import os
import pathlib

YT8M_2018 = pathlib.Path(os.environ.get(
    "YT8M_DATA_DIR",
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018"))
VALIDATE = YT8M_2018 / "validate"

# The converged-evidence protocol's split of the 100 validate shards, by shard, made once
# (README, "Converged evidence"): patterns relative to VALIDATE.
TRAIN = "validate00[0-4]*,validate010*,validate011*"
VALIDATION = "validate012*"
TEST = "validate013*,validate014*"
SPLIT = {"train": TRAIN, "validation": VALIDATION, "test": TEST}


def pattern(shards: str) -> str:
  """A comma-separated shard pattern of `TRAIN`/`VALIDATION`/`TEST` as paths under VALIDATE."""
  return ",".join(f"{VALIDATE}/{part}" for part in shards.split(","))
