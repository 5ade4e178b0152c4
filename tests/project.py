"""Kept only for tests/test_serve.py, which still imports copy_project from here: the helper is
bench/projectkit.py now. Remove this file once test_serve.py imports projectkit."""

from projectkit import copy_project

__all__ = ["copy_project"]
