"""Doing it: one attempt as a process, locks, and the serial driver.

PYTEST_DONT_REWRITE
"""
