"""Helpers shared by the tests: builders of images, stores and projects, input drivers.

Plain functions and classes only; fixtures live in the ``conftest.py`` files. Import them
absolutely (``from tests.helpers.synthetic import make_specimen``): ``tests`` is a package,
so pytest's default import mode puts the repository root on ``sys.path``.
"""
