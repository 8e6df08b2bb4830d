"""Registering vmsnap's search attributes on a Temporal namespace, when they are missing.

A worker pointed at a fresh dev server must work with no other step, so it
adds what is missing at start-up. A server that refuses (Temporal Cloud, or
no operator permission) gets a clear message naming the command to run.
"""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from workflows.search_attributes import ALL

log = logging.getLogger("vmsnap.search_attributes")


class SearchAttributesMissing(RuntimeError):
    """The namespace lacks attributes the workflows upsert, and they could not be added."""


def register_command(namespace: str, missing: list[str]) -> str:
    flags = " ".join(f"--name {name} --type Keyword" for name in missing)
    return f"temporal operator search-attribute create --namespace {namespace} {flags}"


async def ensure_search_attributes(client: Client) -> list[str]:
    """Add the missing attributes; returns the names added. Raises with the command to run."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = [key.name for key in ALL if key.name not in listed.custom_attributes]
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                                   for name in missing},
            )
        )
    except RPCError as error:
        raise SearchAttributesMissing(
            f"namespace {namespace!r} lacks the search attributes {', '.join(missing)} and "
            f"they could not be added ({error.message}); an operator must run: "
            f"{register_command(namespace, missing)}"
        ) from error
    log.info("registered search attributes %s on namespace %s", ", ".join(missing), namespace)
    return missing
