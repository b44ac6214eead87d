"""graftmatch: HLA typing, matching and donor search for HSCT in inborn errors of immunity."""

__version__ = "0.1.0"
