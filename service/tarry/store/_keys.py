"""Every Redis key Tarry uses, built in this one module.

Layout 2 (`tarry:v2`): the executions are spread over a fixed number of partitions; all
of a partition's keys share one hash tag, so that a transition's keys live in one Redis
Cluster slot. Layout 1 (`tarry:v1`: one global index of each kind) is refused at start
(`RedisStore.check_layout`).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import NamedTuple

from redis.crc import key_slot

from tarry.engine.namespaces import DEFAULT


class StateField:
    """The fields of an execution's state hash (`Keys.state`). The Lua scripts use the same
    names; each says which it reads and writes."""

    VERSION = "v"
    """Bumped by every commit and claim: the version check of every transition."""
    STATUS = "st"
    SEQUENCE = "seq"
    """The last event's sequence number."""
    SUSPEND_REQUEST = "sreq"
    """The reason of a pending Suspend of a RUNNING execution."""
    DOC = "doc"
    """The JSON document (`tarry.engine._model.Doc`)."""
    EARLY = "early"
    """Resumes kept for wait nodes not reached yet (a JSON array; early.lua appends)."""
    WORKFLOW = "wf"
    """The workflow's name, for listings by workflow."""
    OWNER = "own"
    """The server holding the lease."""
    INDEXES = "ix"
    """The tag indexes the execution joined at creation, space-separated (for deletion)."""


STORED = (StateField.VERSION, StateField.STATUS, StateField.SEQUENCE,
          StateField.SUSPEND_REQUEST, StateField.DOC, StateField.EARLY)
"""The fields that make a `Stored`, in its order."""


class ExecutionKeys(NamedTuple):
    """One execution's keys (`Keys.execution`), and its partition."""

    partition: int
    state: str
    events: str
    channel: str
    base: str

    def request(self, request_id: str) -> str:
        """The first answer to a request id."""
        return f"{self.base}:req:{request_id}"


SLOTS = 16_384
"""Redis Cluster's hash slots."""

DEFAULT_PARTITIONS = 16


class Keys:
    """The key names of one layout: `prefix` (versioned) and its number of partitions.

    Each execution lives in one partition, chosen by a hash of its id. A partition's keys
    (its executions', and its timers, leases, expiries, change log, listing indexes and
    channels) share one hash tag, so every transition touches a single Redis Cluster slot.
    The tags are chosen so that the partitions' slots spread evenly over the slot space
    (on a cluster whose slots are split in even ranges, so are the partitions)."""

    __slots__ = ("partitions", "prefix", "tags")

    def __init__(self, prefix: str = "tarry:v2", partitions: int = DEFAULT_PARTITIONS) -> None:
        if not 1 <= partitions <= 256:
            raise ValueError("partitions: from 1 to 256")
        self.prefix = prefix
        self.partitions = partitions
        self.tags = tuple(_tag(prefix, p, partitions) for p in range(partitions))

    def partition(self, execution_id: str) -> int:
        return zlib.crc32(execution_id.encode()) % self.partitions

    def execution(self, execution_id: str) -> ExecutionKeys:
        """The keys of one execution, built at once (a commit uses several)."""
        p = zlib.crc32(execution_id.encode()) % self.partitions
        base = f"{self.tags[p]}:x:{execution_id}"
        return ExecutionKeys(p, f"{base}:state", f"{base}:events", f"{base}:ch", base)

    # -- one execution's keys ----------------------------------------------------------

    def state(self, execution_id: str) -> str:
        return self.execution(execution_id).state

    def events(self, execution_id: str) -> str:
        return self.execution(execution_id).events

    def request(self, execution_id: str, request_id: str) -> str:
        return self.execution(execution_id).request(request_id)

    def channel(self, execution_id: str) -> str:
        """Each commit of the execution publishes its last sequence here."""
        return self.execution(execution_id).channel

    # -- one partition's keys (`p`: its number) ----------------------------------------

    def timers(self, p: int) -> str:
        return f"{self.tags[p]}:timers"

    def leases(self, p: int) -> str:
        return f"{self.tags[p]}:leases"

    def expiry(self, p: int) -> str:
        """Terminal executions by when their retention ends (ms)."""
        return f"{self.tags[p]}:expiry"

    def changes(self, p: int) -> str:
        """The change log: a stream of the status and waiting-node changes of the
        partition's executions."""
        return f"{self.tags[p]}:changes"

    def control_channel(self, p: int) -> str:
        """`<id> <seq>` when an execution is cancelled or asked to suspend: whichever server
        runs it must react."""
        return f"{self.tags[p]}:ctl"

    def timers_channel(self, p: int) -> str:
        """The earliest due time (ms) of the timers a commit set: every timer loop looks."""
        return f"{self.tags[p]}:timers-set"

    def _idx(self, namespace: str, p: int) -> str:
        return (f"{self.tags[p]}:idx" if namespace == DEFAULT
                else f"{self.tags[p]}:ns:{namespace}:idx")

    def all(self, namespace: str, p: int) -> str:
        """The executions of one namespace, by creation time."""
        return f"{self._idx(namespace, p)}:all"

    def by_status(self, status: str, namespace: str, p: int) -> str:
        return f"{self._idx(namespace, p)}:status:{status}"

    def by_workflow(self, workflow: str, namespace: str, p: int) -> str:
        return f"{self._idx(namespace, p)}:wf:{workflow}"

    def by_waiting(self, workflow: str, node: str, namespace: str, p: int) -> str:
        """Executions of one workflow with a wait node waiting at `node` (AWAITING, or
        SUSPENDED with the wait still open). Names hold no ':'."""
        return f"{self._idx(namespace, p)}:waiting:{workflow}:{node}"

    def by_tag(self, key: str, value: str, namespace: str, p: int) -> str:
        """Executions that carry one tag (hashed: a tag may hold any character)."""
        digest = hashlib.sha1(f"{key}\0{value}".encode(), usedforsecurity=False).hexdigest()
        return f"{self._idx(namespace, p)}:tag:{digest}"

    def by_workflow_status(self, workflow: str, status: str, namespace: str, p: int) -> str:
        """Executions of one workflow in one status (workflow names hold no ':')."""
        return f"{self._idx(namespace, p)}:wfst:{workflow}:{status}"

    # -- the layout's own keys, and the batches (StartBulk), under a tag of their own --

    @property
    def meta(self) -> str:
        """The layout: its number of partitions, set by the first server to start."""
        return f"{self.prefix}:meta"

    @property
    def _bulk_tag(self) -> str:
        return f"{{{self.prefix}:bulk}}"

    def bulk(self, bulk_id: str) -> str:
        """A batch's hash (StartBulk): spec, status, total, position, counts, lease owner."""
        return f"{self._bulk_tag}:{bulk_id}"

    def bulk_items(self, bulk_id: str) -> str:
        """The execution ids a batch took, in order (a list)."""
        return f"{self._bulk_tag}:{bulk_id}:items"

    @property
    def bulks(self) -> str:
        """RUNNING batches by when their lease ends (ms; 0: nobody holds it)."""
        return f"{self._bulk_tag}:running"

    def bulk_request(self, namespace: str, request_id: str) -> str:
        """The batch a StartBulk request id started."""
        return f"{self._bulk_tag}:req:{namespace}:{request_id}"

    @staticmethod
    def timer_member(execution_id: str, node: str) -> str:
        return f"{execution_id}\n{node}"

    @staticmethod
    def split_timer_member(member: str) -> tuple[str, str]:
        execution_id, _, node = member.partition("\n")
        return execution_id, node


def _tag(prefix: str, p: int, partitions: int) -> str:
    """Partition `p`'s hash tag: the first `{<prefix>:p<p>.<n>}` whose slot lies in the
    p-th of `partitions` even ranges of the slot space."""
    low, high = p * SLOTS // partitions, (p + 1) * SLOTS // partitions
    n = 0
    while True:
        name = f"{prefix}:p{p}.{n}"
        if low <= key_slot(name.encode()) < high:
            return f"{{{name}}}"
        n += 1
