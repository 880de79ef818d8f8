"""Stasis-app settings from the environment: credentials never end up where they would be logged."""

from __future__ import annotations

import pytest

from stasis_app.config import StasisSettings

_ENV = {"CLUSTERQ_NODE_ID": "a", "CLUSTERQ_ARI_PASSWORD": "secret-pw"}


def test_the_ari_url_and_user_come_from_the_environment_and_the_password_stays_out_of_repr() -> None:
    s = StasisSettings.from_env({**_ENV, "CLUSTERQ_ARI_URL": "http://10.0.0.5:8088/", "CLUSTERQ_ARI_USER": "cq"})
    assert (s.ari_url, s.ari_user, s.ari_password) == ("http://10.0.0.5:8088/", "cq", "secret-pw")
    assert "secret-pw" not in repr(s)


@pytest.mark.parametrize("url", ["http://cq:hunter2@10.0.0.5:8088/", "http://cq@10.0.0.5:8088/"])
def test_credentials_in_the_ari_url_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(ValueError, match="CLUSTERQ_ARI_USER and CLUSTERQ_ARI_PASSWORD") as err:
        StasisSettings.from_env({**_ENV, "CLUSTERQ_ARI_URL": url})
    assert "hunter2" not in str(err.value)
