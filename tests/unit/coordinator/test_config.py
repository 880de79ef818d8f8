"""Coordinator settings from the environment: etcd credentials and TLS files (CLUSTERQ_ETCD_*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.config import CoordinatorSettings

PASSWORD = "s3cret-etcd-pw"


def test_without_etcd_security_variables_the_client_is_plaintext_and_anonymous() -> None:
    s = CoordinatorSettings.from_env({})
    assert (s.etcd_user, s.etcd_password, s.etcd_ca_file, s.etcd_cert_file, s.etcd_key_file) == (
        "", "", None, None, None)


def test_user_and_password_come_from_the_environment_and_the_password_stays_out_of_repr() -> None:
    s = CoordinatorSettings.from_env({"CLUSTERQ_ETCD_USER": "clusterq", "CLUSTERQ_ETCD_PASSWORD": PASSWORD})
    assert (s.etcd_user, s.etcd_password) == ("clusterq", PASSWORD)
    assert PASSWORD not in repr(s) and "clusterq" in repr(s)


def test_the_password_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text(PASSWORD + "\n")
    s = CoordinatorSettings.from_env({"CLUSTERQ_ETCD_USER": "u", "CLUSTERQ_ETCD_PASSWORD_FILE": str(f)})
    assert s.etcd_password == PASSWORD


@pytest.mark.parametrize("env, message", [
    ({"CLUSTERQ_ETCD_USER": "u"}, "both CLUSTERQ_ETCD_USER and CLUSTERQ_ETCD_PASSWORD"),
    ({"CLUSTERQ_ETCD_PASSWORD": PASSWORD}, "both CLUSTERQ_ETCD_USER and CLUSTERQ_ETCD_PASSWORD"),
    ({"CLUSTERQ_ETCD_USER": "u", "CLUSTERQ_ETCD_PASSWORD": PASSWORD, "CLUSTERQ_ETCD_PASSWORD_FILE": "/x"},
     "not both"),
    ({"CLUSTERQ_ETCD_CA_FILE": "/ca.pem", "CLUSTERQ_ETCD_CERT_FILE": "/c.pem"}, "CLUSTERQ_ETCD_KEY_FILE"),
    ({"CLUSTERQ_ETCD_CA_FILE": "/ca.pem", "CLUSTERQ_ETCD_KEY_FILE": "/c.key"}, "CLUSTERQ_ETCD_CERT_FILE"),
    ({"CLUSTERQ_ETCD_CERT_FILE": "/c.pem", "CLUSTERQ_ETCD_KEY_FILE": "/c.key"}, "needs CLUSTERQ_ETCD_CA_FILE"),
])
def test_half_configured_security_is_refused_without_repeating_the_password(env: dict[str, str],
                                                                            message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        CoordinatorSettings.from_env(env)
    assert PASSWORD not in str(err.value)


def test_an_unreadable_password_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-pw"
    with pytest.raises(OSError, match="no-such-pw"):
        CoordinatorSettings.from_env({"CLUSTERQ_ETCD_USER": "u", "CLUSTERQ_ETCD_PASSWORD_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        CoordinatorSettings.from_env({"CLUSTERQ_ETCD_USER": "u", "CLUSTERQ_ETCD_PASSWORD_FILE": str(empty)})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xffpw")
    with pytest.raises(ValueError, match="not UTF-8") as err:
        CoordinatorSettings.from_env({"CLUSTERQ_ETCD_USER": "u", "CLUSTERQ_ETCD_PASSWORD_FILE": str(binary)})
    assert "0xff" not in str(err.value)


def test_tls_files_are_paths_read_later() -> None:
    s = CoordinatorSettings.from_env({"CLUSTERQ_ETCD_CA_FILE": "/etc/etcd/ca.pem",
                                      "CLUSTERQ_ETCD_CERT_FILE": "/etc/etcd/c.pem",
                                      "CLUSTERQ_ETCD_KEY_FILE": "/etc/etcd/c.key"})
    assert (s.etcd_ca_file, s.etcd_cert_file, s.etcd_key_file) == (
        Path("/etc/etcd/ca.pem"), Path("/etc/etcd/c.pem"), Path("/etc/etcd/c.key"))


@pytest.mark.parametrize("var", ["CLUSTERQ_LEASE_TTL", "CLUSTERQ_NODE_TTL", "CLUSTERQ_SETTLE_TIME",
                                 "CLUSTERQ_FAULT_STEP_DOWN_DELAY"])
@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-1", "3s"])
def test_a_duration_that_is_no_number_of_seconds_names_its_variable(var: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"^{var} must be a number of seconds >= 0, not '{value}'$"):
        CoordinatorSettings.from_env({var: value})


@pytest.mark.parametrize("env, var", [
    ({"CLUSTERQ_LEASE_TTL": "1"}, "CLUSTERQ_LEASE_TTL"),
    ({"CLUSTERQ_LEASE_TTL": "5", "CLUSTERQ_NODE_TTL": "5"}, "CLUSTERQ_NODE_TTL"),
    ({"CLUSTERQ_ETCD_ENDPOINTS": ","}, "CLUSTERQ_ETCD_ENDPOINTS"),
    ({"CLUSTERQ_ETCD_PREFIX": "clusterq"}, "CLUSTERQ_ETCD_PREFIX"),
])
def test_a_value_out_of_its_range_names_its_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ValueError, match=f"^{var} "):
        CoordinatorSettings.from_env(env)
