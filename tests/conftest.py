"""Shared fixtures: a fake OpenAI upstream and gateways served on real ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.gateway_server import GatewayServer
from tests.support.redis import fresh_prefix
from tests.support.responses_routes import translated_gateway

PROVIDER_KEY = "sk-upstream-provider-secret-42"


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake upstream, reset for this test."""
    fake_openai.reset()
    return fake_openai


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def anthropic_upstream(fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    """The fake Anthropic upstream, reset for this test."""
    fake_anthropic.reset()
    return fake_anthropic


@pytest.fixture(scope="session")
def mock_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway on the built-in mock provider."""
    server = GatewayServer(tmp_path_factory.mktemp("mock-gw"), PROVIDER="mock").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_gateway(tmp_path_factory: pytest.TempPathFactory,
                   fake_openai: FakeOpenAI) -> Iterator[GatewayServer]:
    """A gateway whose provider is the fake OpenAI upstream, with short timeouts."""
    server = GatewayServer(
        tmp_path_factory.mktemp("openai-gw"), PROVIDER="openai",
        OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=PROVIDER_KEY,
        CIRCUIT_FIRST_BYTE_TIMEOUT=1.0, CIRCUIT_IDLE_TIMEOUT=0.5,
        CIRCUIT_MAX_BODY_BYTES=64 * 1024,
        # Tests here fail the upstream on purpose, one after another: keep the breaker out of it
        # (its own tests use gateways of their own).
        CIRCUIT_BREAKER_CONSECUTIVE_FAILURES=10_000, CIRCUIT_BREAKER_MINIMUM_CALLS=10_000,
        CIRCUIT_RETRY_MAX_ATTEMPTS=1,  # one upstream call per request: faults show as they are
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def door(tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI,
         fake_anthropic: FakeAnthropic) -> Iterator[GatewayServer]:
    """The Responses door, on a gateway routing to each kind of target: OpenAI (passthrough),
    a chat-only upstream and Anthropic (translated); tests/support/responses_routes.py."""
    server = translated_gateway(tmp_path_factory.mktemp("responses-gw"), fake_openai.base_url,
                                fake_anthropic.base_url)
    yield server
    server.stop()


@pytest.fixture
def request_id() -> str:
    """A fresh id to send as x-request-id, so a test finds its own record."""
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared test Redis, its keys deleted afterwards
    (skips without a Redis; fails under CI)."""
    with fresh_prefix() as prefix:
        yield prefix
