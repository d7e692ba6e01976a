"""The caller's cache of compile results, bounded in bytes, not entries.

Keyed by the source text. An entry is the source's UTF-8 size plus either the marshalled
code a child sent before running anything (opaque bytes here: this process never
unmarshals them, the next child does) or a :class:`~faas_sandbox.engine.verdict.Refusal`
(a failed compile, replayed without forking). Least recently used entries go first; an
entry bigger than an eighth of the budget is not kept at all.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .verdict import Refusal

DEFAULT_BYTES = 32 << 20
_ENTRY_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class Entry:
    size: int  # UTF-8 bytes of the source
    code: bytes | None = None
    refusal: Refusal | None = None

    def cost(self, source: str) -> int:
        text = len(self.refusal.message) if self.refusal else 0
        return sys.getsizeof(source) + len(self.code or b"") + text + _ENTRY_OVERHEAD


class CodeCache:
    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, source: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(source)
            if entry is not None:
                self._entries.move_to_end(source)
            return entry

    def put(self, source: str, entry: Entry) -> None:
        cost = entry.cost(source)
        if cost > self.max_bytes // 8:
            return
        with self._lock:
            old = self._entries.pop(source, None)
            if old is not None:
                self.bytes -= old.cost(source)
            self._entries[source] = entry
            self.bytes += cost
            while self.bytes > self.max_bytes:
                key, dropped = self._entries.popitem(last=False)
                self.bytes -= dropped.cost(key)
