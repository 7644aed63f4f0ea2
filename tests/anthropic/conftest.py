"""The official ``anthropic`` client, strict response validation on, pointed at the session's server."""

import anthropic
import pytest


def anthropic_client_for(server, base: str = "") -> anthropic.Anthropic:
    """``base`` is what goes before ``/v1/messages``: ``""`` (Claude Code's), ``/anthropic`` or ``/engines``."""
    return anthropic.Anthropic(base_url=server.url + base, api_key="x", max_retries=0,
                               _strict_response_validation=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="session")
def client(dmr_server) -> anthropic.Anthropic:
    return anthropic_client_for(dmr_server)
