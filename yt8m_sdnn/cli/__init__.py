"""The absl binaries: one module a console script, and the flag sets they share.

`bin/X.py` in a checkout and the installed console scripts (setup.cfg) both run
`yt8m_sdnn.cli.X.run`. TensorFlow starts quietly for them (`yt8m_sdnn.startup`).
"""
