"""tether.agents.itdesk: the IT access desk example (public names only)."""
