"""The run ledger: SQLite tables the seed's readers know, written by the controller only.

PYTEST_DONT_REWRITE
"""
