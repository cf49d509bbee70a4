"""`yt8m-predict` from a checkout: `python bin/yt8m_predict.py --help` (or `python -m bin.yt8m_predict`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from yt8m_sdnn.cli.yt8m_predict import run  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
  run()
