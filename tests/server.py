"""The tests' view of the real server: src/loadtest.py's harness."""
from loadtest import Server, http, predict, run_clients  # noqa: F401
