"""Unsigned JWTs and Codex auth.json documents for tests (shapes: codex-backend.md §5, §6).

The filter only decodes JWT claims (it cannot verify OpenAI's signatures), so an unsigned
token with the right claims is a faithful stand-in.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from typing import Optional

AUTH_CLAIM = "https://api.openai.com/auth"
DEFAULT_ACCOUNT_ID = "acct_test_1"
DEFAULT_REFRESH_TOKEN = "rt_test_1"
DEFAULT_PLAN = "plus"
TEN_DAYS = 10 * 24 * 3600


def b64url(data: bytes) -> str:
    """base64url without padding, as JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict, header: Optional[dict] = None) -> str:
    header = header or {"alg": "none", "typ": "JWT"}
    parts = [json.dumps(header, separators=(",", ":")), json.dumps(claims, separators=(",", ":"))]
    return ".".join(b64url(p.encode("utf-8")) for p in parts) + "." + b64url(b"unsigned-test-signature")


def decode_jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def auth_claim(account_id: str = DEFAULT_ACCOUNT_ID, plan: str = DEFAULT_PLAN) -> dict:
    return {AUTH_CLAIM: {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan}}


def access_token(
    account_id: str = DEFAULT_ACCOUNT_ID,
    plan: str = DEFAULT_PLAN,
    exp: Optional[int] = None,
    expires_in: int = TEN_DAYS,
    **extra_claims,
) -> str:
    """An access token JWT; `exp` (absolute) wins over `expires_in` (seconds from now)."""
    now = int(time.time())
    claims = {
        "iss": "https://auth.openai.com",
        "aud": ["https://api.openai.com/v1"],
        "iat": now,
        "exp": exp if exp is not None else now + expires_in,
        **auth_claim(account_id, plan),
        **extra_claims,
    }
    return make_jwt(claims)


def id_token(account_id: str = DEFAULT_ACCOUNT_ID, plan: str = DEFAULT_PLAN, email: str = "user@example.com") -> str:
    now = int(time.time())
    claims = {
        "iss": "https://auth.openai.com",
        "aud": "app_EMoamEEZ73f0CkXaXp7hrann",
        "iat": now,
        "exp": now + 3600,
        "email": email,
        **auth_claim(account_id, plan),
    }
    return make_jwt(claims)


def auth_document(
    account_id: str = DEFAULT_ACCOUNT_ID,
    plan: str = DEFAULT_PLAN,
    exp: Optional[int] = None,
    expires_in: int = TEN_DAYS,
    refresh_token: str = DEFAULT_REFRESH_TOKEN,
    include_account_id: bool = True,
    api_key: Optional[str] = None,
) -> dict:
    """A Codex auth.json document in ChatGPT mode."""
    tokens = {
        "id_token": id_token(account_id, plan),
        "access_token": access_token(account_id, plan, exp=exp, expires_in=expires_in),
        "refresh_token": refresh_token,
    }
    if include_account_id:
        tokens["account_id"] = account_id
    return {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": api_key,
        "tokens": tokens,
        "last_refresh": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
    }


def auth_json(**kwargs) -> str:
    """`auth_document(**kwargs)` serialised, as OPENAI_CODEX_AUTH carries it."""
    return json.dumps(auth_document(**kwargs), indent=2)
