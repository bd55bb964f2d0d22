"""tether.agents."""
