"""tether.graphs."""
