"""Hook implementations (filled in by its issue)."""
