"""The test suite, a package (every folder has an ``__init__.py``) so that test modules and
helpers import by their full name: ``tests.helpers.<module>``."""
