"""Every Redis key Tarry uses, built in this one module.

Keys of one execution share the hash tag `{<id>}` so that a transition's keys live in one
Redis Cluster slot. The timer, lease and listing indexes are global sorted sets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Keys:
    prefix: str = "tarry:v1"

    def state(self, execution_id: str) -> str:
        return f"{self.prefix}:{{{execution_id}}}:state"

    def events(self, execution_id: str) -> str:
        return f"{self.prefix}:{{{execution_id}}}:events"

    def request(self, execution_id: str, request_id: str) -> str:
        return f"{self.prefix}:{{{execution_id}}}:req:{request_id}"

    @property
    def timers(self) -> str:
        return f"{self.prefix}:timers"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:leases"

    def _idx(self, namespace: str) -> str:
        # The default namespace keeps the index keys from before namespaces existed.
        return (f"{self.prefix}:idx" if namespace == DEFAULT
                else f"{self.prefix}:ns:{namespace}:idx")

    def all(self, namespace: str = DEFAULT) -> str:
        """The executions of one namespace, by creation time."""
        return f"{self._idx(namespace)}:all"

    def by_status(self, status: str, namespace: str = DEFAULT) -> str:
        return f"{self._idx(namespace)}:status:{status}"

    def by_workflow(self, workflow: str, namespace: str = DEFAULT) -> str:
        return f"{self._idx(namespace)}:wf:{workflow}"

    def by_waiting(self, workflow: str, node: str, namespace: str = DEFAULT) -> str:
        """Executions of one workflow with a wait node waiting at `node` (AWAITING, or
        SUSPENDED with the wait still open). Names hold no ':'."""
        return f"{self._idx(namespace)}:waiting:{workflow}:{node}"

    def by_tag(self, key: str, value: str, namespace: str = DEFAULT) -> str:
        """Executions that carry one tag (hashed: a tag may hold any character)."""
        digest = hashlib.sha1(f"{key}\0{value}".encode(), usedforsecurity=False).hexdigest()
        return f"{self._idx(namespace)}:tag:{digest}"

    def by_workflow_status(self, workflow: str, status: str, namespace: str = DEFAULT) -> str:
        """Executions of one workflow in one status (workflow names hold no ':')."""
        return f"{self._idx(namespace)}:wfst:{workflow}:{status}"

    def bulk(self, bulk_id: str) -> str:
        """A batch's hash (StartBulk): spec, status, total, position, counts, lease owner."""
        return f"{self.prefix}:bulk:{{{bulk_id}}}"

    def bulk_items(self, bulk_id: str) -> str:
        """The execution ids a batch took, in order (a list)."""
        return f"{self.prefix}:bulk:{{{bulk_id}}}:items"

    @property
    def bulks(self) -> str:
        """RUNNING batches by when their lease ends (ms; 0: nobody holds it)."""
        return f"{self.prefix}:bulks"

    def bulk_request(self, namespace: str, request_id: str) -> str:
        """The batch a StartBulk request id started."""
        return f"{self._idx(namespace)}:bulkreq:{request_id}"

    @property
    def changes(self) -> str:
        """The change log: a stream of every execution's status and waiting-node changes."""
        return f"{self.prefix}:changes"

    @property
    def expiry(self) -> str:
        """Terminal executions by when their retention ends (ms)."""
        return f"{self.prefix}:expiry"

    @property
    def waiting_ready(self) -> str:
        """Set once every waiting execution is in its waiting-node indexes (`migrate`)."""
        return f"{self.prefix}:idx:waiting-ready"

    @property
    def pairs_ready(self) -> str:
        """Set once every execution is in its (workflow, status) index (`RedisStore.migrate`)."""
        return f"{self.prefix}:idx:wfst-ready"

    def channel(self, execution_id: str) -> str:
        """Each commit of the execution publishes its last sequence here."""
        return f"{self.prefix}:{{{execution_id}}}:ch"

    @property
    def control_channel(self) -> str:
        """`<id> <seq>` when an execution is cancelled or asked to suspend: whichever server
        runs it must react."""
        return f"{self.prefix}:ctl"

    @property
    def timers_channel(self) -> str:
        """The earliest due time (ms) of the timers a commit set: every timer loop looks."""
        return f"{self.prefix}:timers-set"

    @staticmethod
    def timer_member(execution_id: str, node: str) -> str:
        return f"{execution_id}\n{node}"

    @staticmethod
    def split_timer_member(member: str) -> tuple[str, str]:
        execution_id, _, node = member.partition("\n")
        return execution_id, node
