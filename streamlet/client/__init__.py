"""Client side of streamlet: what the CLI shows and how it talks to a JobManager."""
