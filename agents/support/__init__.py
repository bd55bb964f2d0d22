"""tether.agents.support."""
