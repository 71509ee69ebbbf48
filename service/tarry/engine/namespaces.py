"""Namespaces (tenants): every execution belongs to one.

An execution id is unique within its namespace. Inside the server the two travel together
as one *qualified* id, `namespace/id` (`/` is in no execution id), except in the default
namespace, whose qualified ids are the plain ids: everything stored before namespaces
existed, and everything a server without authentication stores, is in `default` as it was.
Callers only ever see plain ids; the api layer qualifies what they send and strips what it
answers, so another namespace's execution is, to a caller, one that does not exist.
"""

from __future__ import annotations

import re

DEFAULT = "default"
SEPARATOR = "/"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def valid(name: str) -> bool:
    """1-63 lowercase letters, digits and `-`, starting with a letter or digit."""
    return _NAME.fullmatch(name) is not None


def qualify(namespace: str, execution_id: str) -> str:
    if namespace == DEFAULT or not execution_id:
        return execution_id
    return f"{namespace}{SEPARATOR}{execution_id}"


def split(qualified: str) -> tuple[str, str]:
    """(namespace, plain id) of a qualified id."""
    namespace, sep, plain = qualified.partition(SEPARATOR)
    return (namespace, plain) if sep else (DEFAULT, qualified)


def namespace_of(qualified: str) -> str:
    return split(qualified)[0]
