"""A mock of the ChatGPT OAuth token endpoint (`POST /oauth/token`, codex-backend.md §4):
refresh tokens rotate, a reused one is rejected with `refresh_token_reused`, and every call
is counted. Answers can be delayed or failed on purpose."""

from __future__ import annotations

import threading
import time
from typing import Dict, List, Optional

from . import tokens
from .mock_codex import MockCodex, RecordedRequest, Script

OAUTH_PATH = "/oauth/token"


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
        self.http = MockCodex(path=OAUTH_PATH, default=self._answer)

    def __enter__(self) -> "MockOAuth":
        self.http.start()
        return self

    def __exit__(self, *exc) -> None:
        self.http.stop()

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def calls(self) -> int:
        return len(self.http.requests)

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
