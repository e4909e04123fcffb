"""Committing: check what the workers staged, assemble it into the target atomically, and
recover from a commit that was killed."""
