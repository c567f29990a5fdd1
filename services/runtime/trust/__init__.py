"""Trust: signed events and the keys that sign and verify them."""
