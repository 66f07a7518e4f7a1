"""Data sets that come from registry packages (never committed to this repository)."""
