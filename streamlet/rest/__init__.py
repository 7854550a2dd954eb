"""The JobManager's REST API (aiohttp), with Flink's paths and JSON shapes (DESIGN.md section 8)."""
