"""The clinical pathway: patient records, and later follow-up."""
