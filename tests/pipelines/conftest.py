"""Pipeline tests use ``isolated_settings`` and the stack fixtures of ``tests/conftest.py``."""
