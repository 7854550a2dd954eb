"""Public test kit: fakes and helpers for tests of streamlet and of code built on it."""
