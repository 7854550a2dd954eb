"""Event time and processing time: the pure pieces (no operators, no asyncio).

* :mod:`~streamlet.time.durations`: ``"4s"``, ``"500ms"`` → milliseconds, for YAML keys;
* :mod:`~streamlet.time.watermarks`: watermark strategies, per-split generators and the
  minimum-over-inputs :class:`~streamlet.time.watermarks.WatermarkTracker`;
* :mod:`~streamlet.time.timestamps`: a source's ``timestamp:`` spec compiled to a batch function;
* :mod:`~streamlet.time.windows`: window assigners (tumbling, sliding by slices, session, global);
* :mod:`~streamlet.time.timers`: per-key event-time and processing-time timer services.

Times are int milliseconds since the epoch throughout.
"""
