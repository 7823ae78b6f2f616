"""Family 'maf' (being written; registers itself when done)."""
