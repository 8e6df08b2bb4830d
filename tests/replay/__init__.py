"""Recorded histories of every workflow type, replayed on the current code (upgrade safety)."""
