"""NUT fixtures (filled in below)."""
