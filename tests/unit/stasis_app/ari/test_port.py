"""AriSettings validation and secrecy, the error tree, and that both implementations are AriPorts."""

from __future__ import annotations

import pytest

from stasis_app.ari.aioari_adapter import AioAriAdapter
from stasis_app.ari.fake import FakeAri
from stasis_app.ari.port import AriError, AriPort, AriSettings, AriUnavailable, ChannelGone


def _settings(**overrides: object) -> AriSettings:
    values: dict[str, object] = {"url": "http://127.0.0.1:8088", "username": "u", "password": "s3cret-pw",
                                 "node_id": "a"}
    values.update(overrides)
    return AriSettings(**values)  # type: ignore[arg-type]


def test_password_never_appears_in_repr_or_str() -> None:
    settings = _settings()
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings)
    assert "password='***'" in repr(settings)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8088", "http://127.0.0.1:8088/", "http://127.0.0.1:8088/ari", "http://127.0.0.1:8088/ari/"]
)
def test_http_root_accepts_root_or_ari_url(url: str) -> None:
    assert _settings(url=url).http_root == "http://127.0.0.1:8088/"


@pytest.mark.parametrize(
    "overrides",
    [
        {"url": "ws://127.0.0.1:8088"},
        {"app": ""},
        {"app": "a,b"},
        {"backoff_initial": 0},
        {"backoff_initial": 6.0, "backoff_max": 5.0},
        {"heartbeat_interval": 0},
        {"heartbeat_timeout": -1},
        {"request_timeout": 0},
    ],
)
def test_bad_settings_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _settings(**overrides)


def test_error_tree() -> None:
    gone = ChannelGone("c1", 409, "Channel not in Stasis application")
    assert isinstance(gone, AriError)
    assert (gone.channel_id, gone.status, gone.message) == ("c1", 409, "Channel not in Stasis application")
    assert (ChannelGone("c2").status, ChannelGone("c2").message) == (404, "Channel not found")
    down = AriUnavailable("answer: not connected")
    assert isinstance(down, AriError)
    assert down.status == 0
    assert str(AriError(500, "Allocation failed")) == "ARI 500: Allocation failed"


def test_both_implementations_satisfy_the_protocol() -> None:
    # mypy checks the assignments structurally; at run time we check the node id plumbing.
    ports: list[AriPort] = [FakeAri("n1"), AioAriAdapter(_settings(node_id="n2"))]
    assert [p.node_id for p in ports] == ["n1", "n2"]
