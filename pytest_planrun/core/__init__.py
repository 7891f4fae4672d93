"""What to do next: the pure scheduling core (no I/O, no pytest, no clock).

PYTEST_DONT_REWRITE
"""
