"""A worker on another machine, run from an enrollment bundle (see README.md)."""
