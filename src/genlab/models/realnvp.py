"""Family 'realnvp' (being written; registers itself when done)."""
