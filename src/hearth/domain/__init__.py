"""Pure models and rules: no I/O, no clock, no randomness (all passed in)."""
