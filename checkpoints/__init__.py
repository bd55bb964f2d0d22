"""tether.checkpoints."""
