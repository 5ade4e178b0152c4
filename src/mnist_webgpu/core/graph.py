"""The one graph walk: what is reachable from some starting points (imports, includes, references)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def reachable(starts: Iterable[T], neighbours: Callable[[T], Iterable[T]]) -> list[T]:
    """Every node reachable from `starts` (themselves included), breadth first, each once."""
    seen: dict[T, None] = {}
    todo = deque(starts)
    while todo:
        node = todo.popleft()
        if node not in seen:
            seen[node] = None
            todo.extend(neighbours(node))
    return list(seen)
