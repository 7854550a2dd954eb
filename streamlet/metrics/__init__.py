"""Metrics: counters, gauges and meters per task and operator (see :mod:`.registry`)."""
