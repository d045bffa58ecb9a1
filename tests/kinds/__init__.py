"""Each kind's tests, one folder per family of collectors/ (and `backups` for checks/): its test modules,
and fixtures.py, listed in tests/conftest.py's pytest_plugins, with its fixtures and its conformance target."""
