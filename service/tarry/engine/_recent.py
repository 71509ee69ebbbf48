"""The recent-state cache: the executions this process last left AWAITING or SUSPENDED, as
it committed them, so that a Resume, Suspend or Cancel of one starts without reading Redis.
A stale entry costs nothing but a round trip: its commit's version check refuses it, and the
request is answered from what Redis holds."""

from __future__ import annotations

from collections import OrderedDict

from ._model import Status
from ._store import Stored


class Recent:
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, Stored] = OrderedDict()

    def remember(self, stored: Stored, execution_id: str) -> None:
        """Keep `stored`, just committed here, if a request may change it next."""
        entries = self._entries
        if stored.status in (Status.AWAITING, Status.SUSPENDED) and stored.suspend_request is None:
            entries[execution_id] = stored
            entries.move_to_end(execution_id)
            while len(entries) > self._size:
                entries.popitem(last=False)
        else:
            entries.pop(execution_id, None)

    def take(self, execution_id: str) -> Stored | None:
        """The remembered state, forgotten as it is handed out (a request changes it)."""
        return self._entries.pop(execution_id, None)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._entries
