"""The Redis adapter of the engine's store port."""

from ._keys import Keys
from ._redis import RedisStore

__all__ = ["Keys", "RedisStore"]
