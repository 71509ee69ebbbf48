"""Who is calling, and may they: bearer tokens checked before a request is read.

A call brings `authorization: Bearer <token>` in its metadata. The token is either one of a
tokens file (only its SHA-256 is stored) or a JWT signed by a key of a configured JWKS file
(PyJWT verifies signature, expiry, issuer and audience). Either gives a `Principal`: a
subject and its roles. Roles nest: `reader` may call the reads (GetExecution, the listings,
WatchExecution, DescribeWorkflow), `operator` also Run, Resume, Suspend and Cancel, `admin`
everything (DeleteExecution too). Health is not behind any of this.

No token, or one that is not valid: UNAUTHENTICATED. A valid token whose roles do not cover
the method: PERMISSION_DENIED. Neither reply says which tokens exist or why one was refused
beyond expired / not valid, and no log line quotes a token.

The tokens file is TOML:

    [[token]]
    sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    subject = "billing-service"
    roles = ["operator"]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import grpc
import jwt

from tarry.engine import TarryError, namespaces


class Role(IntEnum):
    """What a caller may do; each role may do all the lower ones may."""

    READER = 1
    OPERATOR = 2
    ADMIN = 3


NEEDS: Mapping[str, Role] = {
    "Run": Role.OPERATOR,
    "Resume": Role.OPERATOR,
    "Suspend": Role.OPERATOR,
    "Cancel": Role.OPERATOR,
    "DeleteExecution": Role.ADMIN,
    "StartBulk": Role.OPERATOR,
    "CancelBulk": Role.OPERATOR,
}
"""The role each WorkflowService method needs; every other method (the reads) needs READER."""


class Unauthenticated(TarryError):
    """No valid credentials came with the call."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(TarryError):
    """The caller's roles do not allow this method."""

    reason = "PERMISSION_DENIED"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    """The highest of the caller's roles."""
    namespaces: tuple[str, ...] = (namespaces.DEFAULT,)
    """The namespaces the caller may reach, the first one by default."""


NAMESPACE: ContextVar[str] = ContextVar("tarry_namespace", default=namespaces.DEFAULT)
"""The namespace of the call being handled (set by `identify`)."""

NAMESPACE_METADATA = "tarry-namespace"
"""The call metadata that names the namespace a call works in."""


class AuthConfigError(ValueError):
    """A tokens or JWKS file that cannot be used; the message names the file."""


class Authenticator:
    """Checks the bearer token of a call against a tokens file and/or a JWKS file."""

    def __init__(self, tokens_file: str | None = None, jwks_file: str | None = None, *,
                 issuer: str | None = None, audience: str | None = None) -> None:
        if not tokens_file and not jwks_file:
            raise AuthConfigError("authentication needs a tokens file or a JWKS file")
        self._tokens = _read_tokens(Path(tokens_file)) if tokens_file else {}
        self._jwks = _read_jwks(Path(jwks_file)) if jwks_file else None
        self._issuer = issuer
        self._audience = audience

    def authenticate(self, metadata: Sequence[tuple[str, Any]]) -> Principal:
        """The caller, from the call's metadata; Unauthenticated when it cannot be told."""
        token = _bearer(metadata)
        found = self._from_file(token)
        if found is not None:
            return found
        if self._jwks is not None and token.count(".") == 2:
            return self._from_jwt(token)
        raise Unauthenticated("the bearer token is not valid")

    def authorize(self, principal: Principal, method: str) -> None:
        need = NEEDS.get(method, Role.READER)
        if principal.role < need:
            raise PermissionDenied(
                f"{method} needs the {need.name.lower()} role",
                metadata={"method": method, "role": need.name.lower()})

    def _from_file(self, token: str) -> Principal | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        # Every entry compared in constant time, none skipped: how long this takes tells a
        # caller nothing about which digests exist (a tokens file holds a few entries).
        found = None
        for known, principal in self._tokens.items():
            if hmac.compare_digest(known, digest):
                found = principal
        return found

    def _from_jwt(self, token: str) -> Principal:
        assert self._jwks is not None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._jwks[kid] if kid is not None else _only(self._jwks)
            claims = jwt.decode(
                token, key.key, algorithms=[key.algorithm_name], issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except (jwt.PyJWTError, KeyError, ValueError):
            raise Unauthenticated("the bearer token is not valid") from None
        role = _highest(claims.get("roles", []))
        if role is None:
            raise Unauthenticated("the bearer token carries no Tarry role")
        reach = _namespaces(claims.get("namespaces"))
        if reach is None:
            raise Unauthenticated("the bearer token's namespaces claim is not a list of names")
        return Principal(str(claims["sub"]), role, reach)


def _bearer(metadata: Sequence[tuple[str, Any]]) -> str:
    values = [v for k, v in metadata if k == "authorization"]
    if not values:
        raise Unauthenticated("this server needs a bearer token (metadata "
                              "`authorization: Bearer <token>`)")
    value = values[0]
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the authorization metadata must read `Bearer <token>`")
    return token.strip()


def _namespaces(given: object) -> tuple[str, ...] | None:
    """The namespaces of a token (absent: the default one); None when malformed."""
    if given is None:
        return (namespaces.DEFAULT,)
    if isinstance(given, str):
        given = given.split()
    if (not isinstance(given, list) or not given
            or not all(isinstance(n, str) and namespaces.valid(n) for n in given)):
        return None
    return tuple(given)


def _highest(roles: object) -> Role | None:
    if isinstance(roles, str):
        roles = roles.split()
    if not isinstance(roles, list):
        return None
    found = [Role[r.upper()] for r in roles
             if isinstance(r, str) and r.upper() in Role.__members__]
    return max(found) if found else None


def _only(jwks: Mapping[str | None, jwt.PyJWK]) -> jwt.PyJWK:
    if len(jwks) != 1:
        raise KeyError("the token names no key (kid) and the JWKS has several")
    return next(iter(jwks.values()))


def _read_tokens(path: Path) -> dict[str, Principal]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AuthConfigError(f"tokens file {path}: {exc}") from None
    tokens: dict[str, Principal] = {}
    for n, entry in enumerate(data.get("token", []), start=1):
        digest = str(entry.get("sha256", "")).lower()
        role = _highest(entry.get("roles", []))
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise AuthConfigError(f"tokens file {path}: token {n}: sha256 must be 64 hex digits")
        if not entry.get("subject") or role is None:
            raise AuthConfigError(f"tokens file {path}: token {n} needs a subject and one of "
                                  f"the roles reader, operator, admin")
        reach = _namespaces(entry.get("namespaces"))
        if reach is None:
            raise AuthConfigError(f"tokens file {path}: token {n}: namespaces must be a list "
                                  f"of names (lowercase letters, digits, -)")
        tokens[digest] = Principal(str(entry["subject"]), role, reach)
    if not tokens:
        raise AuthConfigError(f"tokens file {path} has no [[token]] entry")
    return tokens


def _read_jwks(path: Path) -> dict[str | None, jwt.PyJWK]:
    try:
        keys: dict[str, Any] = json.loads(path.read_text())
        found = jwt.PyJWKSet.from_dict(keys).keys
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise AuthConfigError(f"JWKS file {path}: {exc}") from None
    return {key.key_id: key for key in found}


def identify(auth: Authenticator | None, method: str,
             context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """Who is calling `method`, for the audit trail: `peer` (the caller's address) and
    `subject` (the token's, else the client certificate's common name, when either is
    known). With `auth`, raises Unauthenticated or PermissionDenied for a caller that may
    not call `method`."""
    caller = {"peer": context.peer()}
    names = list(context.auth_context().get("x509_common_name", ()))
    if names:
        caller["subject"] = names[0].decode(errors="replace")
    metadata = tuple(context.invocation_metadata() or ())
    asked = next((str(v) for k, v in metadata if k == NAMESPACE_METADATA), None)
    if auth is None:
        reach: tuple[str, ...] = (asked,) if asked else (namespaces.DEFAULT,)
    else:
        principal = auth.authenticate(metadata)
        auth.authorize(principal, method)
        caller["subject"] = principal.subject
        reach = principal.namespaces
    namespace = asked or reach[0]
    if not namespaces.valid(namespace):
        raise PermissionDenied(f"{namespace[:64]!r} is not a namespace name")
    if namespace not in reach:
        raise PermissionDenied(f"this caller may not work in namespace {namespace!r}",
                               metadata={"namespace": namespace})
    NAMESPACE.set(namespace)
    return caller
