"""Fixtures for the store tests; the builders they use are in ``tests/helpers/store_files.py``."""

from __future__ import annotations

import pytest

from tests.helpers.store_files import descriptron_session


@pytest.fixture
def session_folder(tmp_path):
    folder = tmp_path / "specimens"
    folder.mkdir()
    json_path, data, rle = descriptron_session(folder)
    return folder, json_path, data, rle
