"""Files named by a setting: read errors and undecodable secrets name the setting and the path, never
the content."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterq_common.files import read_named, read_secret_text
from clusterq_common.tls import TlsConfigError


def test_an_unreadable_file_names_the_setting_with_the_error_class_asked_for(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"^X_FILE={missing}: cannot read the file: No such file"):
        read_named("X_FILE", missing)
    with pytest.raises(TlsConfigError):
        read_named("X_FILE", missing, TlsConfigError)


def test_secret_text_is_utf8_unstripped_and_never_quoted(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(" pässword\n".encode())
    assert read_secret_text("PW_FILE", secret) == " pässword\n"
    secret.write_bytes(b"\xffs3cret")
    with pytest.raises(ValueError) as err:
        read_secret_text("PW_FILE", secret)
    assert str(err.value) == f"PW_FILE={secret}: not UTF-8 text"
