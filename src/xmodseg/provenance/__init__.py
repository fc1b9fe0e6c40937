"""Where a number came from: DVC stages, record/restore, dvc.lock reading and the audit."""
