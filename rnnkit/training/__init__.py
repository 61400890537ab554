"""Training, written once for every task: the loop (:mod:`.trainer`), checkpoints, the metrics log
and progress display (:mod:`.monitor`), data parallelism (:mod:`.distributed`)."""
