"""Authentication of comet connections: HS256 JWT first, then the users_auth hash (spec 2.3).

JWTs are checked with PyJWT (signature, algorithm), never by hand-written crypto.  Expiry is checked
against the emulator's own clock (so virtual time works), with no leeway, and ``exp`` is required.
"""

from __future__ import annotations

import uuid as _uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import jwt.warnings

from emulator.state import StateStore

# The real server's secret is the short server password plus the dev_id; PyJWT warns about short
# HMAC keys, which is the deployment's choice, not something to report on every login.
warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)


@dataclass
class AuthResult:
    authorized: bool
    key: str          # what serverInfo.data carries (first 32 chars of the stored hash)
    method: str       # "jwt", "hash", "anonymous", "failed"
    reason: str = ""


def jwt_secret(password: str, dev_id: int) -> str:
    """The HMAC secret: the server password with the decimal dev_id appended."""
    return f"{password}{dev_id}"


def decode_jwt(token: str, password: str, dev_id: int, now: float) -> dict | None:
    """Claims of a valid HS256 token signed for this dev_id and not expired at ``now``; else None."""
    if token.count(".") != 2 or len(token) > 600:
        return None
    try:
        claims = jwt.decode(token, jwt_secret(password, dev_id), algorithms=["HS256"],
                            options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                                     "verify_nbf": False, "verify_iss": False, "verify_sub": False,
                                     "verify_jti": False})
    except jwt.PyJWTError:
        return None
    except Exception:  # noqa: BLE001 - malformed input PyJWT does not wrap: never crash a login
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp < 0 or now > exp:
        return None
    return claims


def minted_hash(new_uuid: Callable[[], str] | None = None) -> str:
    """The value the real server stores after a JWT login: a time UUID with '-' as '0', 32 chars."""
    return (new_uuid() if new_uuid is not None else str(_uuid.uuid1())).replace("-", "0")[:32]


def authenticate(store: StateStore, password: str, dev_id: int, user_id: int, key: str, now: float,
                 *, new_uuid: Callable[[], str] | None = None) -> AuthResult:
    if user_id == 0:
        return AuthResult(False, "", "anonymous")
    claims = decode_jwt(key, password, dev_id, now)
    if claims is not None:
        claimed = claims.get("user_id")
        if isinstance(claimed, bool) or not isinstance(claimed, int) or claimed != user_id:
            claims = None
        elif store.is_revoked(dev_id, key):
            return AuthResult(False, "", "failed", "revoked token")
    if claims is not None:
        stored = store.get_hash(dev_id, user_id)
        if stored is None:
            stored = minted_hash(new_uuid)
            store.set_hash(dev_id, user_id, stored)
        return AuthResult(True, stored[:32], "jwt")
    stored = store.get_hash(dev_id, user_id)
    if stored is not None and stored == key:
        return AuthResult(True, stored[:32], "hash")
    return AuthResult(False, "", "failed", "no such hash" if stored is None else "hash mismatch")
