"""Staff access on the kiosk: a PIN stored only as a salted hash, rate-limited attempts, short-lived sessions.

The kiosk config holds `staff_pin_hash = "pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>"` (make one with
`atelier capture hash-pin`); an empty value turns staff mode off. A correct PIN opens a session: a random token
the page sends back in the `X-Staff-Token` header, valid until `session_idle_s` without use.

Lock out the attempts, not the staff. Wrong PINs are counted, and each is forgotten `miss_memory_s` (10 min)
after it was made. With `max_failures` misses remembered, every attempt is refused for a lockout that doubles
with each further miss (30 s, 60 s, ...) but never exceeds `max_lockout_s` (5 min); attempts during a lockout
are refused without being counted. Guessing a 4-digit PIN this way takes weeks, and a shopper who taps wrong
PINs locks the screen out for minutes, not for the day. Staff always have a way in that nobody at the screen
can block: the staff key, a file on a USB stick whose sha256 is the config's `staff_key_sha256`
(`edge.kiosk.staff_desk.find_staff_key`); the page's "Use staff key" button opens a session while it is
plugged in, lockout or not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import UserError

PIN_PATTERN = re.compile(r"^\d{4,12}$")
HASH_SCHEME = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 200_000
_HASH_FORMAT = re.compile(r"^pbkdf2_sha256\$(\d{4,9})\$([0-9a-f]{16,128})\$([0-9a-f]{64})$")
TOKEN_HEADER = "X-Staff-Token"


def hash_pin(pin: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """The config line value for a staff PIN: PBKDF2-HMAC-SHA256 with a random 16-byte salt.

    Raises:
        UserError: the PIN is not 4 to 12 digits.
    """
    if not PIN_PATTERN.match(pin):
        raise UserError("a staff PIN is 4 to 12 digits")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def check_pin_hash(stored: str) -> None:
    """Raise UserError unless `stored` is a hash made by `hash_pin` (config validation)."""
    if not _HASH_FORMAT.match(stored):
        raise UserError("staff_pin_hash must look like pbkdf2_sha256$<iterations>$<salt>$<hash>: make it with "
                        "`atelier capture hash-pin` (never put the PIN itself in the config)")


def verify_pin(pin: str, stored: str) -> bool:
    """True when `pin` matches the stored hash (constant-time comparison)."""
    m = _HASH_FORMAT.match(stored)
    if m is None or not isinstance(pin, str) or len(pin) > 64:
        return False
    iterations, salt, expected = int(m.group(1)), bytes.fromhex(m.group(2)), m.group(3)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations).hex()
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class UnlockResult:
    """What an unlock attempt got: a token, or why not (and for how long)."""

    token: str | None
    error: str | None = None
    retry_after_s: float = 0.0
    locked: bool = False


class StaffGuard:
    """Checks PINs with a rate limit and keeps the staff sessions (thread-safe).

    Args:
        pin_hash: the configured hash; "" disables staff mode (every unlock is refused).
        max_failures: wrong PINs in a row before the lockout starts.
        lockout_s: the first lockout; it doubles with each further wrong PIN, up to `max_lockout_s`.
        max_lockout_s: the longest lockout.
        miss_memory_s: a wrong PIN is forgotten this long after it was made.
        session_idle_s: a session ends after this long unused.
        clock: time source (monotonic seconds).
    """

    def __init__(
        self,
        pin_hash: str,
        *,
        max_failures: int = 5,
        lockout_s: float = 30.0,
        max_lockout_s: float = 300.0,
        miss_memory_s: float = 600.0,
        session_idle_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if pin_hash:
            check_pin_hash(pin_hash)
        self.enabled = bool(pin_hash)
        self._hash = pin_hash
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.miss_memory_s = miss_memory_s
        self.session_idle_s = session_idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._misses: list[float] = []  # when each remembered wrong PIN was made
        self._locked_until = 0.0
        self._sessions: dict[str, float] = {}  # token -> last use

    def _now(self) -> float:
        return float(self._clock())

    def unlock(self, pin: object) -> UnlockResult:
        """Check a PIN; a correct one (outside a lockout) opens a session."""
        if not self.enabled:
            return UnlockResult(None, "staff mode is off on this kiosk (no staff_pin_hash in its config)")
        with self._lock:
            now = self._now()
            if now < self._locked_until:
                wait = self._locked_until - now
                return UnlockResult(None, f"Too many wrong PINs: try again in {_duration(wait)}, or use the staff key.",
                                    wait, locked=True)
            ok = isinstance(pin, str) and verify_pin(pin, self._hash)
            if ok:
                self._misses = []
                return UnlockResult(self._open_session(now))
            self._misses = [t for t in self._misses if now - t < self.miss_memory_s] + [now]
            misses = len(self._misses)
            if misses >= self.max_failures:
                extra = misses - self.max_failures
                lock_s = min(self.max_lockout_s, self.lockout_s * (2 ** min(extra, 20)))
                self._locked_until = now + lock_s
                return UnlockResult(None, f"Wrong PIN. Too many wrong PINs: try again in {_duration(lock_s)}.",
                                    lock_s, locked=True)
            left = self.max_failures - misses
            return UnlockResult(None, f"Wrong PIN. {left} more {'try' if left == 1 else 'tries'} before a "
                                      "short lockout.")

    def unlock_with_key(self) -> UnlockResult:
        """Open a session for the holder of the staff key (the caller found it plugged in): no PIN, no lockout."""
        if not self.enabled:
            return UnlockResult(None, "staff mode is off on this kiosk (no staff_pin_hash in its config)")
        with self._lock:
            now = self._now()
            self._misses, self._locked_until = [], 0.0  # the staff are here: the shopper's misses are void
            return UnlockResult(self._open_session(now))

    def _open_session(self, now: float) -> str:
        """Under the lock: a new session token (expired sessions dropped)."""
        token = secrets.token_urlsafe(32)
        self._sessions = {t: used for t, used in self._sessions.items() if now - used < self.session_idle_s}
        self._sessions[token] = now
        return token

    def check(self, token: str | None) -> bool:
        """True (and the session's idle timer restarts) when `token` names a live session."""
        if not token or not self.enabled:
            return False
        # Compared as bytes: compare_digest raises TypeError on str with non-ASCII characters (a header a client
        # may send), and our tokens are ASCII, so such a token simply matches none.
        given = token.encode("utf-8", "surrogatepass")
        with self._lock:
            now = self._now()
            for known, used in list(self._sessions.items()):
                if now - used >= self.session_idle_s:
                    del self._sessions[known]
            match = next((t for t in self._sessions if hmac.compare_digest(t.encode(), given)), None)
            if match is None:
                return False
            self._sessions[match] = now
            return True

    def lock(self, token: str | None) -> None:
        """End a session (the page's "lock" button)."""
        with self._lock:
            if token:
                self._sessions.pop(token, None)


def _duration(seconds: float) -> str:
    """'45 s', '1 min', '5 min': how long a lockout lasts, in words a person reads at a glance."""
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min"
