"""Family 'fm' (being written; registers itself when done)."""
