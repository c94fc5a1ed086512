"""Exact Ward clustering that scales: reciprocal-nearest-neighbour rounds over blocked
matrix products.

Ward's linkage is reducible (merging A and B never brings the union closer to a third cluster
than the nearer of A and B was), so every pair of reciprocal nearest neighbours can be merged
in the same round without changing the tree, and a cluster whose nearest neighbour was not
merged keeps it. Each round therefore only searches nearest neighbours for the new clusters
and for those whose neighbour merged. The search is a float32 matrix product in blocks
(`torch`, CPU or GPU); the best few candidates of each query are re-scored in float64 and the
float32 ranking is certified against an error bound (rows that fail are searched again in
float64), so the result is the exact Ward tree. Ties are broken by the smaller cluster id.

Memory is linear in n: the data, float64 centroids and one `[block, n]` score block.

The output is a SciPy linkage matrix `Z` `[n - 1, 4]`: merged ids, height, size; heights are
SciPy's Ward distances `sqrt(2 * n_a * n_b / (n_a + n_b)) * ||c_a - c_b||`, rows sorted by
height, so `scipy.cluster.hierarchy` functions accept it.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

log = logging.getLogger(__name__)

_EPS32 = float(np.finfo(np.float32).eps)
_TOPK = 16  # candidates kept per cluster after a full search
_BIG = np.iinfo(np.int64).max


class _State:
    """Slots 0..n-1 hold clusters; a merge puts the new cluster in the lower slot and retires
    the other. Per slot: float64 centroid (and a float32 copy for the search), size, cluster id,
    nearest neighbour and its cost, and a candidate cache from the last full search: the
    `_TOPK` best slots with exact costs, and a lower bound on every other cluster's cost."""

    def __init__(self, X: np.ndarray, sizes: np.ndarray, device: torch.device):
        self.n, self.d = X.shape
        c64 = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
        w = torch.from_numpy(sizes)[:, None]
        self.c64 = c64 - (w * c64).sum(0) / w.sum()  # Ward is shift-invariant; centring helps float32
        self.sq64 = (self.c64 * self.c64).sum(1)
        self.c32 = self.c64.to(device=device, dtype=torch.float32)
        self.sq32 = (self.c32 * self.c32).sum(1)
        self.size = torch.from_numpy(sizes.astype(np.float64))
        self.ids = torch.arange(self.n, dtype=torch.int64)
        self.active = torch.ones(self.n, dtype=torch.bool)
        self.nn = torch.full((self.n,), -1, dtype=torch.int64)
        self.cost = torch.full((self.n,), math.inf, dtype=torch.float64)
        self.born = torch.full((self.n,), -1, dtype=torch.int64)  # round the slot's cluster was made
        self.since = torch.full((self.n,), -1, dtype=torch.int64)  # round of the last full search
        self.cand = torch.zeros((self.n, _TOPK), dtype=torch.int64)
        self.ccost = torch.full((self.n, _TOPK), math.inf, dtype=torch.float64)
        self.bound = torch.zeros(self.n, dtype=torch.float64)
        self.device = device
        self.full_searches = 0
        self.partial_hits = 0
        self.fallbacks = 0

    def _pick(self, cost: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-wise minimum cost, ties to the smallest cluster id: (slot, cost)."""
        best = cost.min(dim=1, keepdim=True).values
        ids = torch.where(cost == best, self.ids[slots], torch.full_like(slots, _BIG))
        col = ids.argmin(dim=1, keepdim=True)
        return torch.gather(slots, 1, col).squeeze(1), best.squeeze(1)

    def full_search(self, queries: torch.Tensor, rnd: int, block: int) -> None:
        """Nearest neighbours of `queries` over all active clusters; refreshes their caches."""
        act = torch.nonzero(self.active).squeeze(1)
        m = len(act)
        if m < 2 or len(queries) == 0:
            return
        self.full_searches += len(queries)
        A = self.c32[act]
        A_sq = self.sq32[act]
        A_inv = (1.0 / self.size[act]).to(device=self.device, dtype=torch.float32)
        pos = torch.full((self.n,), -1, dtype=torch.int64)
        pos[act] = torch.arange(m)
        k = min(_TOPK, m - 1)
        max_size = float(self.size[act].max())
        max_norm = float(self.sq64[act].max().sqrt())
        for s in range(0, len(queries), block):
            q = queries[s : s + block]
            b = len(q)
            scores = torch.addmm(A_sq[None, :], self.c32[q], A.T, alpha=-2.0)  # |c|^2 - 2 q.c
            scores.add_(self.sq32[q][:, None])
            q_inv = (1.0 / self.size[q]).to(device=self.device, dtype=torch.float32)
            scores.div_(q_inv[:, None] + A_inv[None, :])  # times w = 1 / (1/n_q + 1/n_c)
            scores[torch.arange(b, device=self.device), pos[q].to(self.device)] = math.inf
            approx, cpos = torch.topk(scores, k, dim=1, largest=False, sorted=True)
            approx, cpos = approx.cpu().double(), cpos.cpu()
            cand = act[cpos]
            exact = self._exact_rows(q, cand)
            nn, best = self._pick(exact, cand)
            # every cluster outside the top-k scored >= the k-th in float32; its true cost is
            # at least that minus a worst-case float32 error bound: |q|^2 + |c|^2 - 2 q.c with
            # d-term sums and rounded inputs errs by at most ~(d + 8) eps (|q| + |c|)^2, times w
            nq = self.size[q]
            w_max = nq * max_size / (nq + max_size)
            err = (self.d + 8) * _EPS32 * (self.sq64[q].sqrt() + max_norm) ** 2 * w_max * 1.01
            bound = approx[:, -1] - err if k < m - 1 else torch.full((b,), math.inf, dtype=torch.float64)
            ok = best < bound
            ok |= k == m - 1
            self.nn[q], self.cost[q] = nn, best
            self.cand[q, :k], self.ccost[q, :k] = cand, exact
            self.ccost[q, k:] = math.inf
            self.bound[q] = bound
            self.since[q] = rnd
            for r in torch.nonzero(~ok).squeeze(1).tolist():
                self._exhaustive(int(q[r]), act)

    def _exact_rows(self, q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        diff = self.c64[q][:, None, :] - self.c64[cand]
        sq, sc = self.size[q][:, None], self.size[cand]
        return (sq * sc / (sq + sc)) * (diff * diff).sum(-1)

    def _exhaustive(self, slot: int, act: torch.Tensor) -> None:
        """float64 search over everything, for the rare row float32 could not certify."""
        self.fallbacks += 1
        others = act[act != slot]
        q = torch.tensor([slot])
        diff = self.c64[slot][None, :] - self.c64[others]
        cost = (diff * diff).sum(1) * (self.size[slot] * self.size[others] / (self.size[slot] + self.size[others]))
        nn, best = self._pick(cost[None, :], others[None, :])
        self.nn[q], self.cost[q] = nn, best
        self.bound[q] = -math.inf  # no cache: the next time it goes stale, search fully

    def _partial_block(self, q: torch.Tensor, since: int, fresh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Best (slot, exact cost) per query among its valid cached candidates and `fresh`.

        Fresh clusters are screened in float32; those within its error bound of the row
        minimum are re-scored with the same symmetric difference form as every
        other exact cost, so cost(i, j) == cost(j, i) bit for bit and ties break the same way
        from both sides (without that, reciprocal pairs can vanish)."""
        b = len(q)
        cand = self.cand[q]
        valid = self.active[cand] & (self.born[cand] <= since)
        rows = [torch.arange(b)[:, None].expand(-1, cand.shape[1])[valid]]
        slots = [cand[valid]]
        costs = [self.ccost[q][valid]]
        if len(fresh):
            # float32 screen; everything within twice its worst-case error of the row minimum
            # is re-scored exactly, so the exact minimum is never screened out
            qd, fd = q.to(self.device), fresh.to(self.device)
            approx = torch.addmm(self.sq32[fd][None, :], self.c32[qd], self.c32[fd].T, alpha=-2.0)
            approx.add_(self.sq32[qd][:, None])
            nq, nf = self.size[q][:, None], self.size[fresh][None, :]
            w = (nq * nf / (nq + nf)).to(device=self.device, dtype=torch.float32)
            approx.mul_(w)
            rowmin = approx.min(dim=1, keepdim=True).values
            norms = self.sq64[fresh].sqrt().max()
            err = (self.d + 8) * _EPS32 * (self.sq64[q].sqrt() + norms) ** 2 * self.size[q] * 1.01
            tol = err.to(device=self.device, dtype=torch.float32)[:, None]
            r, c = torch.nonzero(approx <= rowmin + 2 * tol, as_tuple=True)
            r, c = r.cpu(), c.cpu()
            diff = self.c64[q[r]] - self.c64[fresh[c]]
            sq, sc = self.size[q[r]], self.size[fresh[c]]
            rows.append(r)
            slots.append(fresh[c])
            costs.append((sq * sc / (sq + sc)) * (diff * diff).sum(-1))
        rows, slots, costs = torch.cat(rows), torch.cat(slots), torch.cat(costs)
        order = np.lexsort((self.ids[slots].numpy(), costs.numpy(), rows.numpy()))
        rows, slots, costs = rows[order], slots[order], costs[order]
        first = torch.ones(len(rows), dtype=torch.bool)
        first[1:] = rows[1:] != rows[:-1]
        nn = torch.full((b,), -1, dtype=torch.int64)
        best = torch.full((b,), math.inf, dtype=torch.float64)
        nn[rows[first]], best[rows[first]] = slots[first], costs[first]
        return nn, best

    def partial_search(self, queries: torch.Tensor, rnd: int, block: int) -> torch.Tensor:
        """For unchanged clusters whose neighbour merged: the best of their cached candidates
        that are unchanged since the cache was made, and of every cluster made since; certified
        when it beats the cache's bound on all other clusters. Returns the queries this could
        not certify (they need a full search). (Tried and dropped: certifying a new cluster
        A+B from the union of A's and B's caches; it rarely certified and cost more.)"""
        if len(queries) == 0:
            return queries
        act = torch.nonzero(self.active).squeeze(1)
        failed = []
        for since in torch.unique(self.since[queries]).tolist():
            qs = queries[self.since[queries] == since]
            fresh = act[self.born[act] > since]
            if since < 0 or len(fresh) > len(act) // 4:
                failed.append(qs)
                continue
            for s in range(0, len(qs), block):
                q = qs[s : s + block]
                nn, best = self._partial_block(q, since, fresh)
                ok = best < self.bound[q]
                self.nn[q[ok]], self.cost[q[ok]] = nn[ok], best[ok]
                self.partial_hits += int(ok.sum())
                failed.append(q[~ok])
        return torch.cat(failed) if failed else queries[:0]


def ward_linkage(
    X: np.ndarray,
    sizes: np.ndarray | None = None,
    block: int = 512,
    device: str = "cpu",
    progress=None,
) -> np.ndarray:
    """Exact Ward linkage of the rows of `X`.

    Args:
        X: `[n, d]` points (or cluster centroids).
        sizes: `[n]` positive weights: each row stands for that many points at its position
            (k-means micro-clusters); default all 1.
        block: query rows per matrix product (memory `block * n * 4` bytes).
        device: torch device for the products.
        progress: optional callable `(merges_done)` called after each round.

    Returns:
        `Z` `[n - 1, 4]` float64, SciPy linkage format, sorted by height.
    """
    X = np.asarray(X)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"Ward needs a [n >= 2, d] array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("Ward input contains NaN or infinite values")
    n = len(X)
    sizes = np.ones(n) if sizes is None else np.asarray(sizes, dtype=np.float64)
    st = _State(X, sizes, torch.device(device))
    merges: list[tuple[int, int, float, float, int]] = []
    next_id = n
    full = torch.arange(n)
    stale = full[:0]  # searched from caches first
    rnd = 0
    t0 = time.perf_counter()
    while len(merges) < n - 1:
        again = st.partial_search(stale, rnd, block)
        st.full_search(torch.unique(torch.cat([full, again])), rnd, block)
        act = torch.nonzero(st.active).squeeze(1)
        nn = st.nn[act]
        recip = (st.nn[nn] == act) & (act < nn)
        a, b = act[recip], nn[recip]
        if len(a) == 0:
            raise RuntimeError("no reciprocal nearest neighbours found; this cannot happen for Ward")
        sa, sb = st.size[a], st.size[b]
        new_size = sa + sb
        heights = torch.sqrt(2.0 * st.cost[a])
        ia, ib = st.ids[a], st.ids[b]
        for x, y, h, sz in zip(torch.minimum(ia, ib).tolist(), torch.maximum(ia, ib).tolist(),
                               heights.tolist(), new_size.tolist()):
            merges.append((x, y, h, sz, rnd))
        rnd += 1
        # the new cluster lives in slot a; slot b is retired
        st.c64[a] = (sa[:, None] * st.c64[a] + sb[:, None] * st.c64[b]) / new_size[:, None]
        st.sq64[a] = (st.c64[a] * st.c64[a]).sum(1)
        st.c32[a] = st.c64[a].to(device=st.device, dtype=torch.float32)
        st.sq32[a] = (st.c32[a] * st.c32[a]).sum(1)
        st.size[a] = new_size
        st.ids[a] = torch.arange(next_id, next_id + len(a))
        next_id += len(a)
        st.born[a] = rnd
        st.active[b] = False
        merged = torch.zeros(n, dtype=torch.bool)
        merged[a] = True
        merged[b] = True
        act = torch.nonzero(st.active).squeeze(1)
        full = a
        stale = act[merged[st.nn[act]] & ~merged[act]]
        if progress is not None:
            progress(len(merges))
    log.debug("Ward: n=%d, %d rounds, %d full searches, %d cache hits, %d float64 fallbacks, %.1f s",
              n, rnd, st.full_searches, st.partial_hits, st.fallbacks, time.perf_counter() - t0)
    return _to_scipy(merges, n)


def _to_scipy(merges: list[tuple[int, int, float, float, int]], n: int) -> np.ndarray:
    """Sort merges by (height, round) and renumber new clusters in that order."""
    order = sorted(range(len(merges)), key=lambda i: (merges[i][2], merges[i][4]))
    # provisional id of merge i is n + i (assigned in creation order)
    final = {}
    Z = np.empty((len(merges), 4), dtype=np.float64)
    for row, i in enumerate(order):
        a, b, h, size, _ = merges[i]
        a, b = final.get(a, a), final.get(b, b)
        Z[row] = (min(a, b), max(a, b), h, size)
        final[n + i] = n + row
    return Z


def cut_tree(Z: np.ndarray, k: int) -> np.ndarray:
    """Labels `[n]` in 0..k-1 of the k clusters left after undoing the last k-1 merges,
    numbered by each cluster's first member."""
    n = len(Z) + 1
    if not 1 <= k <= n:
        raise ValueError(f"cannot cut {n} points into {k} clusters")
    parent = np.arange(2 * n - 1)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for row in range(n - k):
        a, b = int(Z[row, 0]), int(Z[row, 1])
        parent[find(a)] = n + row
        parent[find(b)] = n + row
    return first_seen_labels(np.array([find(i) for i in range(n)]))


def first_seen_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..k-1 by first appearance, so equal partitions get equal labels."""
    uniq, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))
    return rank[inverse]
