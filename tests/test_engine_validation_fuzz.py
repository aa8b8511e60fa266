"""Every generated malformed body is refused by validation with a problem list, never an exception."""

from engine.settings import Settings
from engine.validation import validate_request
from tests.malformed_bodies import malformed_bodies, valid_body


def test_the_unmutated_body_is_valid():
    import elements  # noqa: F401

    assert validate_request(valid_body(), Settings()).ok


def test_a_thousand_malformed_bodies_each_get_problems():
    settings = Settings()
    for body in malformed_bodies(1000):
        result = validate_request(body, settings)
        assert not result.ok, body[:200]
        assert result.errors, body[:200]
        assert all(p.path and p.message for p in result.errors)
