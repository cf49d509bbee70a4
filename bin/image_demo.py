"""`image-demo` from a checkout: `python bin/image_demo.py --help` (or `python -m bin.image_demo`)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from yt8m_sdnn.cli.image_demo import run  # noqa: E402  pylint: disable=wrong-import-position

if __name__ == "__main__":
  run()
