"""The training loop shared by every method (seeding, device, AMP, checkpoints, resume, logging)."""
