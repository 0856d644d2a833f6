"""A mock of the ChatGPT OAuth issuer (codex-backend.md §2-§4).

The token endpoint (`POST /oauth/token`): refresh tokens rotate, a reused one is rejected
with `refresh_token_reused`, and every call is counted. Answers can be delayed or failed on
purpose.

The login endpoints, with `issuer` as `CODEX_AUTH_ISSUER`:
- browser login: `GET /oauth/authorize` checks the query and redirects to its `redirect_uri`
  with a one-time code bound to the PKCE challenge and that redirect URI;
- device login: `POST /api/accounts/deviceauth/usercode` (404 while `device_enabled` is
  false), `POST /api/accounts/deviceauth/token` (403 pending for `pending_polls` polls, then
  the authorization code with the server-made PKCE pair; `device_outcome` "expire" answers
  410 `device_code_expired`, "deny" 400 `access_denied`, "wait" stays pending);
- the code exchange (`grant_type=authorization_code`, form-encoded): the code is single-use,
  and client id, redirect URI and `code_verifier` (S256 of the challenge) must match, else
  400 `invalid_grant`. A successful login's refresh token becomes the current one, so a
  wrapper using the login refreshes against the same mock.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional
from urllib.parse import parse_qs, urlencode, urlsplit

from . import tokens
from .mock_codex import MockCodex, RecordedRequest, Script

OAUTH_PATH = "/oauth/token"
AUTHORIZE_PATH = "/oauth/authorize"
USER_CODE_PATH = "/api/accounts/deviceauth/usercode"
DEVICE_TOKEN_PATH = "/api/accounts/deviceauth/token"
DEVICE_CALLBACK_PATH = "/deviceauth/callback"
CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
LOGIN_ACCOUNT_ID = "acct_login_1"
LOGIN_PLAN = "pro"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class _Grant:
    """An authorization code waiting to be exchanged."""

    challenge: str
    redirect_uri: str


@dataclass
class _Device:
    device_auth_id: str
    user_code: str
    polls: int = 0


class MockOAuth:
    def __init__(self, account_id: str = tokens.DEFAULT_ACCOUNT_ID, expires_in: int = tokens.TEN_DAYS) -> None:
        self.account_id = account_id
        self.expires_in = expires_in
        self._lock = threading.Lock()
        self._current = tokens.DEFAULT_REFRESH_TOKEN
        self._spent: List[str] = []
        self._issued = 0
        self._fail_next: List[Script] = []
        # More accounts (a pool): each one's current refresh token -> its account id.
        self._others: Dict[str, str] = {}
        self.delay = 0.0
        # Bumped by reset(): an answer still sleeping from an earlier test must not touch
        # the new test's state.
        self._epoch = 0
        self._reset_login()
        self.http = MockCodex(
            path=OAUTH_PATH,
            default=self._answer,
            extra_paths=(AUTHORIZE_PATH, USER_CODE_PATH, DEVICE_TOKEN_PATH),
        )

    def _reset_login(self) -> None:
        self.device_enabled = True
        self.pending_polls = 1
        self.device_outcome = "authorize"
        self.interval = "1"
        self.login_account_id = LOGIN_ACCOUNT_ID
        self.login_plan = LOGIN_PLAN
        self._codes: Dict[str, _Grant] = {}
        self._devices: Dict[str, _Device] = {}
        self.logins: List[dict] = []  # the token documents issued by code exchanges

    def __enter__(self) -> "MockOAuth":
        self.http.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.stop()

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def issuer(self) -> str:
        """`CODEX_AUTH_ISSUER` for this mock."""
        return self.http.origin

    @property
    def calls(self) -> int:
        return len(self.http.requests)

    def requests_to(self, path: str) -> List[RecordedRequest]:
        return [r for r in self.http.requests if urlsplit(r.path).path == path]

    @property
    def current_refresh_token(self) -> str:
        with self._lock:
            return self._current

    def reset(self, refresh_token: str = tokens.DEFAULT_REFRESH_TOKEN, expires_in: Optional[int] = None) -> None:
        with self._lock:
            self._epoch += 1
            self._current, self._spent, self._issued, self._fail_next = refresh_token, [], 0, []
            self._others = {}
            self.delay = 0.0
            if expires_in is not None:
                self.expires_in = expires_in
            self._reset_login()
        self.http.reset()

    def add_account(self, refresh_token: str, account_id: str) -> None:
        """Another login this endpoint refreshes (rotating its own refresh token)."""
        with self._lock:
            self._others[refresh_token] = account_id

    def fail_next(self, *scripts: Script) -> None:
        """Answer the next calls with these scripts (e.g. a 503) instead of new tokens."""
        with self._lock:
            self._fail_next.extend(scripts)

    def _answer(self, request: Optional[RecordedRequest]) -> Script:
        path = urlsplit(request.path).path if request is not None else OAUTH_PATH
        if request is not None and path != OAUTH_PATH:
            with self._lock:
                return self._login_answer(path, request)
        if request is not None and request.json is None and request.body:
            form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
            if form.get("grant_type") == "authorization_code":
                with self._lock:
                    if self._fail_next:
                        return self._fail_next.pop(0)
                    return self._exchange(form)
        with self._lock:
            epoch = self._epoch
        if self.delay:
            time.sleep(self.delay)
        body = (request.json if request is not None else None) or {}
        with self._lock:
            if epoch != self._epoch:
                return Script.json(503, {"error": "stale answer from an earlier test"})
            if self._fail_next:
                return self._fail_next.pop(0)
            presented = body.get("refresh_token")
            if presented in self._others and body.get("grant_type") == "refresh_token":
                account_id = self._others.pop(presented)
                self._issued += 1
                self._spent.append(presented)
                rotated = f"rt_rotated_{account_id}_{self._issued}"
                self._others[rotated] = account_id
                return Script.json(200, {
                    "access_token": tokens.access_token(account_id, expires_in=self.expires_in),
                    "id_token": tokens.id_token(account_id),
                    "refresh_token": rotated,
                })
            if presented in self._spent:
                return Script.json(400, {"error": "invalid_grant", "code": "refresh_token_reused"})
            if presented != self._current or body.get("grant_type") != "refresh_token":
                return Script.json(401, {"error": {"code": "refresh_token_invalidated", "message": "unknown refresh token"}})
            self._issued += 1
            self._spent.append(presented)
            self._current = f"rt_rotated_{self._issued}"
            document = {
                "access_token": tokens.access_token(self.account_id, expires_in=self.expires_in),
                "id_token": tokens.id_token(self.account_id),
                "refresh_token": self._current,
            }
        return Script.json(200, document)

    # login ------------------------------------------------------------------------------
    def _login_answer(self, path: str, request: RecordedRequest) -> Script:
        if path == AUTHORIZE_PATH and request.method == "GET":
            return self._authorize({k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()})
        body = request.json if isinstance(request.json, dict) else {}
        if path == USER_CODE_PATH and request.method == "POST":
            if not self.device_enabled:
                return Script.json(404, {"detail": "Not Found"})
            if body.get("client_id") != CLIENT_ID:
                return Script.json(400, {"error": {"code": "invalid_client"}})
            device = _Device(f"dev_{secrets.token_hex(8)}", f"{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}")
            self._devices[device.device_auth_id] = device
            return Script.json(200, {"device_auth_id": device.device_auth_id, "user_code": device.user_code, "interval": self.interval})
        if path == DEVICE_TOKEN_PATH and request.method == "POST":
            device = self._devices.get(body.get("device_auth_id", ""))
            if device is None or body.get("user_code") != device.user_code:
                return Script.json(400, {"error": {"code": "invalid_device_auth", "message": "unknown device code"}})
            device.polls += 1
            if self.device_outcome == "wait" or device.polls <= self.pending_polls:
                return Script.json(403, {"error": {"code": "deviceauth_authorization_pending"}})
            if self.device_outcome == "expire":
                return Script.json(410, {"error": {"code": "device_code_expired", "message": "the code expired"}})
            if self.device_outcome == "deny":
                return Script.json(400, {"error": {"code": "access_denied", "message": "the user declined"}})
            del self._devices[device.device_auth_id]
            verifier = secrets.token_urlsafe(64)
            code = self._issue_code(s256(verifier), self.issuer + DEVICE_CALLBACK_PATH)
            return Script.json(200, {"authorization_code": code, "code_challenge": s256(verifier), "code_verifier": verifier})
        return Script.json(405, {"error": {"message": f"mock: {request.method} {path} is not served"}})

    def _issue_code(self, challenge: str, redirect_uri: str) -> str:
        code = f"ac_{secrets.token_urlsafe(16)}"
        self._codes[code] = _Grant(challenge, redirect_uri)
        return code

    def _authorize(self, query: Dict[str, str]) -> Script:
        problems = [
            name
            for name, ok in (
                ("response_type", query.get("response_type") == "code"),
                ("client_id", query.get("client_id") == CLIENT_ID),
                ("code_challenge_method", query.get("code_challenge_method") == "S256"),
                ("code_challenge", bool(query.get("code_challenge"))),
                ("redirect_uri", query.get("redirect_uri", "").startswith("http://localhost:")),
                ("scope", "offline_access" in query.get("scope", "").split()),
                ("state", bool(query.get("state"))),
            )
            if not ok
        ]
        if problems:
            return Script.json(400, {"error": "invalid_request", "error_description": "bad " + ", ".join(problems)})
        code = self._issue_code(query["code_challenge"], query["redirect_uri"])
        location = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return Script(status=302, headers={"location": location}, body=[], ending="length")

    def _exchange(self, form: Dict[str, str]) -> Script:
        grant = self._codes.pop(form.get("code", ""), None)
        if grant is None:
            return Script.json(400, {"error": "invalid_grant", "error_description": "unknown or used authorization code"})
        if form.get("client_id") != CLIENT_ID:
            return Script.json(401, {"error": "invalid_client", "error_description": "unknown client"})
        if form.get("redirect_uri") != grant.redirect_uri:
            return Script.json(400, {"error": "invalid_grant", "error_description": "redirect_uri does not match"})
        if s256(form.get("code_verifier", "")) != grant.challenge:
            return Script.json(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
        self._issued += 1
        self._current = f"rt_login_{self._issued}"
        document = {
            "id_token": tokens.id_token(self.login_account_id, self.login_plan),
            "access_token": tokens.access_token(self.login_account_id, self.login_plan, expires_in=self.expires_in),
            "refresh_token": self._current,
        }
        self.logins.append(document)
        return Script.json(200, document)
