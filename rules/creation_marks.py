"""Which vmsnap run made an object: the creation mark, and how it is read back.

Labels say which operation an object belongs to, but anyone may write them: a user
who copies `vmsnap.io/restore` onto a PVC of their own must not hand it to the orphan
sweeper. So every object an activity creates also carries the mark
`vmsnap.io/created-by`: the cluster whose worker made it and the workflow run it
worked for, written by the cluster adapter at the moment of creation
(`cluster.creation_marks`). The sweeper removes only what a mark says this cluster
made, for a workflow that is over.

The value is compact JSON (`{"cluster": ..., "run_id": ..., "workflow_id": ...}`): a
workflow ID holds slashes, so a joined string could not be split back safely. Pure.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CREATED_BY_ANNOTATION = "vmsnap.io/created-by"
# On a PVC a restore or clone made, once it points a VM's spec at it (written before the
# VM is): the VM's name. Such a PVC holds a VM's disk whatever the VM's spec says later,
# so the sweeper never removes it.
GIVEN_TO_VM_ANNOTATION = "vmsnap.io/given-to-vm"


class CreationMark(BaseModel):
    """The cluster and the workflow run that created an object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster: str = Field(min_length=1)
    workflow_id: str = Field(min_length=1)
    run_id: str = ""

    def text(self) -> str:
        """The annotation's value."""
        return json.dumps(self.model_dump(), separators=(",", ":"), sort_keys=True)


def read_mark(value: str | None) -> CreationMark | None:
    """The mark an annotation value holds; None when absent or not a mark (a value
    someone wrote by hand that does not parse is no mark at all)."""
    if not value:
        return None
    try:
        return CreationMark.model_validate_json(value)
    except ValidationError:
        return None
