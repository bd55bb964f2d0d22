"""tether: bounded-autonomy agents that write to real systems."""
