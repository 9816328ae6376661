"""Helpers shared by several test modules."""

import pytest

# The helpers assert like tests do: let pytest explain their failures too.
pytest.register_assert_rewrite("tests.support.kubeconfigs")
