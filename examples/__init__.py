"""Runnable examples of Hearth handlers; importable as ``examples.*`` from the repo root."""
