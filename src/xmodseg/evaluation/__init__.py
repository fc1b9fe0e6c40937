"""Per-volume evaluation: inference on the original grid, Dice/ASSD, the translators' anatomy check."""
