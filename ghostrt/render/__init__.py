"""Rendering past one process: many jobs, and one long video split into segments across workers (Ray)."""
