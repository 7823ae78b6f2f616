"""Family 'ddpm' (being written; registers itself when done)."""
