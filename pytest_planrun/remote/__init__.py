"""Steps on workers that do not share the controller's disk: the plan is shipped to them, their
output and provided files stream back over a channel of the worker's own xdist gateway, files for
consumers go out the same way.

PYTEST_DONT_REWRITE
"""
