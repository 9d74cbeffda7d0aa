"""Secret values are checked wherever they enter, and redacted from text that may quote them."""

from __future__ import annotations

from pathlib import Path

import pytest

from steadyserve.control.secrets import (
    MAX_SECRET_BYTES,
    check_secret_value,
    read_secret_values,
    redact,
    write_secret_files,
)
from steadyserve.control.spec import DeploymentSpec, parse_spec
from steadyserve.errors import ConfigError


def spec_with(**refs: dict[str, str]) -> DeploymentSpec:
    return DeploymentSpec(service="svc.py", secrets=refs)


# --- check_secret_value: what the API and the CLI may deliver -----------------------------------
@pytest.mark.parametrize("value", ["", "hunter2", "é" * 100, "line 1\nline 2", "x" * MAX_SECRET_BYTES])
def test_values_an_environment_can_hold_are_accepted(value):
    check_secret_value("API_KEY", value)


@pytest.mark.parametrize(("value", "problem"), [
    ("ab\0cd", "secret API_KEY: the value contains a NUL byte, which an environment variable cannot hold;"
               " remove it (base64-encode binary values)"),
    ("x" * (MAX_SECRET_BYTES + 1), "secret API_KEY: the value is 65537 bytes, over the 64 KiB limit;"
                                   " keep large material where the service reads it"),
    ("é" * (MAX_SECRET_BYTES // 2 + 1), "the value is 65538 bytes, over the 64 KiB limit"),  # bytes, not chars
    ("a\udc80b", "secret API_KEY: the value is not valid Unicode text (it holds a lone surrogate); send it as UTF-8"),
])
def test_values_no_replica_could_be_given_are_refused_naming_the_secret(value, problem):
    with pytest.raises(ConfigError) as caught:
        check_secret_value("API_KEY", value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("name", ["", "1KEY", "API-KEY", "A=B", "A\0B", "../etc/passwd", "K" * 129, "KÉ", "KEY\n"])
def test_names_that_are_not_environment_variable_names_are_refused(name):
    with pytest.raises(ConfigError, match="must look like an environment variable name"):
        check_secret_value(name, "value")


# --- read_secret_values: from_env and from_file -------------------------------------------------
def test_an_oversized_environment_variable_is_refused_naming_secret_and_variable(tmp_path):
    environ = {"BIG": "x" * (MAX_SECRET_BYTES + 1)}
    with pytest.raises(ConfigError) as caught:
        read_secret_values("m", spec_with(API_KEY={"from_env": "BIG"}), tmp_path, environ, "steady.yaml")
    assert str(caught.value).startswith("steady.yaml: deployments.m.secrets.API_KEY (from environment variable BIG):"
                                        " the value is 65537 bytes, over the 64 KiB limit")


def test_a_value_of_exactly_the_limit_is_read_from_a_file_with_its_newline(tmp_path):
    (tmp_path / "key").write_text("k" * MAX_SECRET_BYTES + "\n")
    values = read_secret_values("m", spec_with(KEY={"from_file": "key"}), tmp_path, {})
    assert values == {"KEY": "k" * MAX_SECRET_BYTES}


@pytest.mark.parametrize(("content", "problem"), [
    (b"k" * (MAX_SECRET_BYTES + 2), "is over 64 KiB; keep large material where the service reads it"),
    (b"\xff\xfe", "is not UTF-8 text; base64-encode binary values"),
    (b"ab\0cd", "the value contains a NUL byte"),
])
def test_a_file_no_replica_could_be_given_is_refused_naming_the_secret(tmp_path, content, problem):
    (tmp_path / "key").write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_secret_values("m", spec_with(KEY={"from_file": "key"}), tmp_path, {})
    message = str(caught.value)
    assert message.startswith("the spec: deployments.m.secrets.KEY") and problem in message


@pytest.mark.parametrize(("ref", "problem"), [
    ("{from_env: ''}", "deployments.m.secrets.KEY.from_env: '' is not an environment variable name"),
    ("{from_env: 'A=B'}", "'A=B' is not an environment variable name (empty, or holds '=' or NUL)"),
    ("{from_file: ''}", "deployments.m.secrets.KEY.from_file: must be a file path"),
])
def test_a_source_no_value_could_come_from_is_refused_in_the_spec(ref, problem):
    with pytest.raises(ConfigError, match="steady.yaml:5: ") as caught:
        parse_spec(f"deployments:\n  m:\n    service: svc.py\n    secrets:\n      KEY: {ref}\n", "steady.yaml")
    assert problem in str(caught.value)


def test_a_secret_name_with_a_trailing_newline_is_refused_in_the_spec():
    with pytest.raises(ConfigError, match="must look like an environment variable name"):
        parse_spec('deployments:\n  m:\n    service: svc.py\n    secrets: {"KEY\\n": {from_env: K}}\n', "steady.yaml")


def test_secret_files_are_written_as_utf8_whatever_the_locale(tmp_path):
    write_secret_files(tmp_path / "s", {"KEY": "clé ✓"})
    assert (tmp_path / "s" / "KEY").read_bytes() == "clé ✓".encode()


# --- redact ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "values", "redacted"), [
    ("auth failed for key hunter22", ["hunter22"], "auth failed for key ***"),
    ("a=hunter22 b=hunter22", ["hunter22"], "a=*** b=***"),
    ("nothing secret here", ["hunter22"], "nothing secret here"),
    ("code 12 of 1234", ["12"], "code 12 of 1234"),  # too short to redact: every 12 would go
    ("code abc of abcd", ["abc", "abcd"], "code abc of ***"),
    ("", ["hunter22"], ""),
    ("no values", [], "no values"),
])
def test_known_values_of_four_characters_or_more_are_redacted(text, values, redacted):
    assert redact(text, values) == redacted


@pytest.mark.parametrize("values", [["abcd", "abcdefgh"], ["abcdefgh", "abcd"]])
def test_a_value_within_a_longer_one_leaves_no_part_of_the_longer_showing(values):
    assert redact("token abcdefgh and abcd", values) == "token *** and ***"


def test_overlapping_values_become_one_redaction():
    assert redact("xx abcdefgh yy", ["abcdef", "cdefgh"]) == "xx *** yy"


def test_a_value_is_found_as_repr_and_json_quote_it():
    value = 'pa"ss\nword'
    assert redact(f"bad password {value!r}", [value]) == "bad password '***'"
    assert redact('{"password": "pa\\"ss\\nword"}', [value]) == '{"password": "***"}'


def test_each_line_of_a_multi_line_value_is_redacted_on_its_own():
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----\n"
    assert redact("cannot parse line 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASC'", [key]) == "cannot parse line '***'"


def test_short_lines_of_a_multi_line_value_are_not_redacted_on_their_own():
    assert redact("no user or pass given", ["user\npass\n"]) == "no user or pass given"


def test_redact_takes_any_iterable_of_values():
    values = {"API_KEY": "sk-live-123", "DB": "hunter22"}
    assert redact("sk-live-123 / hunter22", values.values()) == "*** / ***"
    assert redact("sk-live-123 / hunter22", (v for v in values.values())) == "*** / ***"


def test_a_path_like_value_needs_no_escaping():
    assert redact(r"open C:\keys\a.pem failed", [r"C:\keys\a.pem"]) == "open *** failed"
    assert redact(r"open 'C:\\keys\\a.pem' failed", [r"C:\keys\a.pem"]) == "open '***' failed"


def test_read_values_are_redactable(tmp_path: Path):
    (tmp_path / "key").write_text("s3cr3t-value\n")
    values = read_secret_values("m", spec_with(KEY={"from_file": "key"}), tmp_path, {})
    assert redact("replica exited: bad key s3cr3t-value", values.values()) == "replica exited: bad key ***"
