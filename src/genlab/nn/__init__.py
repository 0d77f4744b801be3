"""Building blocks shared by every family: one copy of each."""
