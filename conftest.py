"""Project-wide pytest set-up. pytester comes from ``addopts`` (``-p pytester``), not from
``pytest_plugins`` here: a plan run from another repository with ``--plan path/to/this/plans/x.json``
may make this directory pytest's rootdir, and pytest refuses ``pytest_plugins`` outside the top level."""
