"""Per-call logic of the stasis app."""
