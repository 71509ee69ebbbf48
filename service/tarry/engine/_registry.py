"""Workflows by name and version, loadable from Python modules."""

from __future__ import annotations

import importlib

from ._definition import Workflow
from ._errors import DefinitionError, WorkflowNotFound


class Registry:
    def __init__(self, workflows: list[Workflow] | tuple[Workflow, ...] = ()) -> None:
        self._by_name: dict[str, dict[str, Workflow]] = {}
        for wf in workflows:
            self.add(wf)

    def add(self, wf: Workflow) -> None:
        versions = self._by_name.setdefault(wf.name, {})
        if wf.version in versions and versions[wf.version] is not wf:
            raise DefinitionError(
                f"workflow {wf.name!r} version {wf.version!r} is registered twice")
        versions[wf.version] = wf

    def get(self, name: str, version: str | None = None) -> Workflow:
        versions = self._by_name.get(name)
        if not versions:
            raise WorkflowNotFound(f"no workflow named {name!r}", metadata={"workflow": name})
        if version:
            if version not in versions:
                raise WorkflowNotFound(
                    f"workflow {name!r} has no version {version!r} (known: "
                    f"{', '.join(sorted(versions))})",
                    metadata={"workflow": name, "version": version},
                )
            return versions[version]
        return list(versions.values())[-1]  # the one registered last

    def all(self) -> list[Workflow]:
        return [wf for versions in self._by_name.values() for wf in versions.values()]

    def load_module(self, path: str) -> list[Workflow]:
        """Import `path` and register every `Workflow` at its top level."""
        module = importlib.import_module(path)
        found = [v for v in vars(module).values() if isinstance(v, Workflow)]
        if not found:
            raise DefinitionError(f"module {path!r} defines no workflow")
        for wf in found:
            self.add(wf)
        return found
