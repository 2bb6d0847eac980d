from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uptake_server.config import load_settings
from uptake_server.errors import ConfigError
from uptake_server.ingest.pseudonym import Pseudonymiser, load_key

KEY = b"0123456789abcdef-test-key"


@given(st.text(min_size=1, max_size=300))
def test_pseudonym_is_truncated_hmac_sha256(user_id: str) -> None:
    expected = hmac.new(KEY, user_id.encode(), hashlib.sha256).digest()[:16]
    assert Pseudonymiser(KEY)(user_id) == expected


def test_different_keys_give_different_pseudonyms() -> None:
    assert Pseudonymiser(KEY)("alice") != Pseudonymiser(KEY + b"x")("alice")
    assert Pseudonymiser(KEY)("alice") != Pseudonymiser(KEY)("bob")


def test_short_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Pseudonymiser(b"short")


def test_missing_key_outside_dev_mode_names_the_variables() -> None:
    with pytest.raises(ConfigError, match="UPTAKE_PSEUDONYM_KEY or UPTAKE_PSEUDONYM_KEY_FILE"):
        load_key(load_settings(environ={}))


def test_key_file_is_read_and_a_missing_file_is_named(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("a-secret-key-of-enough-length\n")
    settings = load_settings({"pseudonym_key_file": str(key_file)}, environ={})
    assert load_key(settings) == b"a-secret-key-of-enough-length"
    missing = load_settings({"pseudonym_key_file": str(tmp_path / "nope")}, environ={})
    with pytest.raises(ConfigError, match="cannot read the pseudonym key file"):
        load_key(missing)


def test_dev_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings({"dev": True, "data_dir": str(tmp_path)}, environ={})
    first = load_key(settings)
    assert len(first) == 64
    assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600
    assert load_key(settings) == first
