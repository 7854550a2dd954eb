"""The JobMaster's checkpointing: the coordinator (:mod:`.coordinator`), checkpoint metadata and
its storage (:mod:`.metadata`), and what each subtask restores (:mod:`.restore`)."""
