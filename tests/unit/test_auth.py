"""Tokens, the role matrix and the token bucket."""

from __future__ import annotations

import pytest

from steadyserve.auth import Action, TokenRecord, check, digest, new_token, split_token


def records(*roles: str) -> tuple[dict[str, TokenRecord], dict[str, str]]:
    tokens, values = {}, {}
    for role in roles:
        value, token_id, hashed = new_token()
        tokens[token_id] = TokenRecord(token_id, f"{role}-bot", role, hashed)
        values[role] = value
    return tokens, values


@pytest.mark.parametrize(
    ("role", "action", "status"),
    [
        ("admin", Action.INVOKE, 200), ("admin", Action.READ, 200), ("admin", Action.DEPLOY, 200),
        ("deployer", Action.INVOKE, 403), ("deployer", Action.READ, 200), ("deployer", Action.DEPLOY, 200),
        ("viewer", Action.INVOKE, 403), ("viewer", Action.READ, 200), ("viewer", Action.DEPLOY, 403),
        ("invoker", Action.INVOKE, 200), ("invoker", Action.READ, 403), ("invoker", Action.DEPLOY, 403),
    ],
)
def test_role_matrix(role, action, status):
    tokens, values = records(role)
    assert check(f"Bearer {values[role]}", tokens, action).status == status


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer st_x", "Bearer nonsense"])
def test_malformed_or_missing_tokens_are_401(header):
    tokens, _ = records("admin")
    assert check(header, tokens, Action.READ).status == 401


def test_a_wrong_secret_for_a_known_id_is_401():
    tokens, values = records("admin")
    token_id, _ = split_token(values["admin"])
    assert check(f"Bearer st_{token_id}_wrongsecret", tokens, Action.READ).status == 401


def test_only_the_digest_is_kept():
    value, token_id, hashed = new_token()
    assert value.startswith(f"st_{token_id}_") and hashed == digest(split_token(value)[1])
    assert split_token(value)[1] not in hashed


def test_an_unknown_token_id_costs_the_same_work_as_a_known_one(monkeypatch):
    """No timing difference tells an attacker which token ids exist: both hash once and compare once."""
    import hmac

    import steadyserve.auth as auth

    tokens, values = records("invoker")
    token_id = next(iter(tokens))
    work: list[str] = []
    real_digest, real_compare = auth.digest, hmac.compare_digest
    monkeypatch.setattr(auth, "digest", lambda s: work.append("digest") or real_digest(s))
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: work.append(f"compare{len(a)}") or real_compare(a, b))
    seen = []
    for header in (f"Bearer st_{token_id}_wrongsecret", "Bearer st_00000000_wrongsecret"):
        work.clear()
        assert check(header, tokens, Action.INVOKE).status == 401
        seen.append(list(work))
    assert seen[0] == seen[1] == ["digest", "compare64"]
