"""mailusage: official-mail usage analytics for public agencies."""

__version__ = "0.1.0"
