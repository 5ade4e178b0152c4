"""Digits as a pen draws them: the centre lines a person's pen would follow.

A person draws a digit as one pen line along its centre, of one width; MNIST's ink is a
scanned stroke of varying width. Two pieces turn the latter into the former:

- `skeletons`: Zhang-Suen thinning of a batch of digits to one-pixel centre lines,
  vectorized over the batch (the training set is thinned in seconds);
- `skeleton_paths`: one digit's centre line traced into polylines, the strokes a pen
  would follow (mnist_webgpu.drawings puts them on the pad).

How the page itself renders strokes for the model is mnist_webgpu.drawings.preprocess.
"""

from __future__ import annotations

import numpy as np

INK_THRESHOLD = 100  # MNIST pixels at or above this are ink for the skeleton


def skeletons(images: np.ndarray, threshold: int = INK_THRESHOLD) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H, W) bool one-pixel-wide centre lines (Zhang-Suen thinning).

    Each phase removes, all at once, the ink pixels that its rule marks on the state before
    the phase, as Zhang and Suen's parallel algorithm does.
    """
    ink = np.pad(np.asarray(images) >= threshold, ((0, 0), (1, 1), (1, 1)))
    h, w = ink.shape[1] - 2, ink.shape[2] - 2
    # neighbours p2..p9, clockwise from north, as (row, col) offsets
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    active = np.ones(len(ink), bool)  # images still changing
    while active.any():
        idx = np.flatnonzero(active)
        sub = ink[idx]
        changed = np.zeros(len(idx), bool)
        for phase in (0, 1):
            c = sub[:, 1:-1, 1:-1]
            p = [sub[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w].astype(np.uint8) for dr, dc in offsets]
            count = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if phase == 0:
                corner = ((p[0] & p[2] & p[4]) == 0) & ((p[2] & p[4] & p[6]) == 0)
            else:
                corner = ((p[0] & p[2] & p[6]) == 0) & ((p[0] & p[4] & p[6]) == 0)
            remove = c & (count >= 2) & (count <= 6) & (transitions == 1) & corner
            sub[:, 1:-1, 1:-1] &= ~remove
            changed |= remove.any(axis=(1, 2))
        ink[idx] = sub
        active[idx] = changed
    return ink[:, 1:-1, 1:-1]


Point = tuple[int, int]
NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def skeleton_points(image: np.ndarray, skeleton: np.ndarray | None = None) -> set[Point]:
    """The digit's centre-line pixels; `skeleton`, when given, is the image's own from
    `skeletons` (thinned with a batch)."""
    skel = skeletons(image[None])[0] if skeleton is None else skeleton
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(skel), strict=True)}


def graph(points: set[Point]) -> dict[Point, list[Point]]:
    """8-connected neighbours, without a diagonal that two 4-connected steps already join."""
    adj = {}
    for r, c in points:
        adj[(r, c)] = [
            (r + dr, c + dc)
            for dr, dc in NEIGHBOURS
            if (r + dr, c + dc) in points
            and not (dr and dc and ((r + dr, c) in points or (r, c + dc) in points))
        ]
    return adj


def trace(adj: dict[Point, list[Point]]) -> list[list[Point]]:
    """The skeleton as polylines: each runs between ends or junctions (or round a loop)."""
    seen: set[frozenset] = set()

    def walk(start: Point, nxt: Point) -> list[Point]:
        path = [start, nxt]
        seen.add(frozenset((start, nxt)))
        while len(adj[path[-1]]) == 2:
            cur = path[-1]
            step = [q for q in adj[cur] if frozenset((cur, q)) not in seen]
            if not step:
                break
            seen.add(frozenset((cur, step[0])))
            path.append(step[0])
        return path

    paths = []
    for p in sorted(adj):
        if not adj[p]:
            paths.append([p])
        elif len(adj[p]) != 2:
            paths += [walk(p, q) for q in adj[p] if frozenset((p, q)) not in seen]
    for p in sorted(adj):  # closed loops: nodes of two neighbours only
        paths += [walk(p, q) for q in adj[p] if frozenset((p, q)) not in seen]
    return paths


def skeleton_paths(image: np.ndarray, skeleton: np.ndarray | None = None) -> list[np.ndarray]:
    """The digit's centre line as polylines of (x, y) MNIST pixel coordinates (pixel centres)."""
    return [
        np.array([[c + 0.5, r + 0.5] for r, c in path])
        for path in trace(graph(skeleton_points(image, skeleton)))
    ]
