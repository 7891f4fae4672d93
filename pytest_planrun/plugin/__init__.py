"""Glue between pytest (and pytest-xdist) and planrun's plan, core and runner.

PYTEST_DONT_REWRITE
"""
