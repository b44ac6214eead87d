"""Donor search: screening, grading, match probabilities and ranking over a registry."""
