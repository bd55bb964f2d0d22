"""tether.evals."""
