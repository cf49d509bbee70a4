"""Thin files that run the binaries of `yt8m_sdnn.cli` from a checkout (not installed)."""
