"""Patching: scan a shard for matches, apply the edits and write the staged shard file."""
