"""An example migplane driver in its own distribution."""
