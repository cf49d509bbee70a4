"""Where the real YT8M 2018 files are: $YT8M_DATA_DIR, else ../shared/data/yt8m-2018."""

import os
import pathlib

YT8M_2018 = pathlib.Path(os.environ.get(
    "YT8M_DATA_DIR",
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "yt8m-2018"))
VALIDATE = YT8M_2018 / "validate"
