"""Schema fuzzing of the app's own /openapi.json with schemathesis (bounded examples).

schemathesis needs Python 3.8+, so this runs on the TF2 runtime; on Python 3.7 it is skipped.
"""
import sys

import pytest

if sys.version_info < (3, 8):
    pytest.skip("schemathesis needs Python 3.8+ (runs on the TF2 runtime)", allow_module_level=True)

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402


pytestmark = pytest.mark.slow  # the session's trained export (a training run in a subprocess)

@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_answer_matches_the_schema(case):
    case.call_and_validate()
