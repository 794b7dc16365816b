"""The journal suite, one for every backend (see conftest.py)."""
