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
_TOPK = 8


class _State:
    def __init__(self, X: np.ndarray, sizes: np.ndarray, device: torch.device):
        self.n, self.d = X.shape
        c64 = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
        c64 = c64 - (torch.from_numpy(sizes)[:, None] * c64).sum(0) / sizes.sum()  # Ward is shift-invariant
        self.c64 = c64
        self.c32 = c64.to(device=device, dtype=torch.float32)
        self.sq32 = (self.c32 * self.c32).sum(1)
        self.norm = self.c64.norm(dim=1)
        self.size = torch.from_numpy(sizes.astype(np.float64))
        self.ids = torch.arange(self.n, dtype=torch.int64)
        self.active = torch.ones(self.n, dtype=torch.bool)
        self.nn = torch.full((self.n,), -1, dtype=torch.int64)
        self.cost = torch.full((self.n,), math.inf, dtype=torch.float64)
        self.device = device
        self.fallbacks = 0

    def exact_costs(self, q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """float64 Ward merge costs `[b, k]` of query slots `q` `[b]` with slots `cand` `[b, k]`."""
        diff = self.c64[q][:, None, :] - self.c64[cand]
        sq, sc = self.size[q][:, None], self.size[cand]
        return (sq * sc / (sq + sc)) * (diff * diff).sum(-1)

    def search(self, queries: torch.Tensor, block: int) -> None:
        """Set `nn` and `cost` of the query slots (nearest active cluster, exact)."""
        act = torch.nonzero(self.active).squeeze(1)
        m = len(act)
        if m < 2:
            return
        A = self.c32[act]
        A_sq = self.sq32[act]
        A_inv = (1.0 / self.size[act]).to(device=self.device, dtype=torch.float32)
        A_ids = self.ids[act]
        pos = torch.full((self.n,), -1, dtype=torch.int64)
        pos[act] = torch.arange(m)
        k = min(_TOPK, m - 1)
        max_norm = float(self.norm[act].max())
        for s in range(0, len(queries), block):
            q = queries[s : s + block]
            b = len(q)
            Q = self.c32[q]
            scores = Q @ A.T  # [b, m]
            scores.mul_(-2).add_(self.sq32[q][:, None]).add_(A_sq[None, :]).clamp_(min=0)
            q_inv = (1.0 / self.size[q]).to(device=self.device, dtype=torch.float32)
            scores.div_(q_inv[:, None] + A_inv[None, :])  # w = 1 / (1/n_q + 1/n_c)
            scores[torch.arange(b, device=self.device), pos[q].to(self.device)] = math.inf
            approx, cand_pos = torch.topk(scores, k, dim=1, largest=False, sorted=True)
            approx, cand_pos = approx.cpu().double(), cand_pos.cpu()
            cand = act[cand_pos]
            exact = self.exact_costs(q, cand)
            # deterministic choice: smallest exact cost, then smallest cluster id
            key_order = torch.argsort(A_ids[cand_pos], dim=1, stable=True)
            exact_o = torch.gather(exact, 1, key_order)
            best_in_order = torch.argmin(exact_o, dim=1)  # first minimum = smallest id among ties
            best = torch.gather(key_order, 1, best_in_order[:, None]).squeeze(1)
            best_cost = exact[torch.arange(b), best]
            # certify: every cluster outside the top-k has float32 score >= the k-th; its true
            # cost is at least that minus the float32 error bound
            wq = 1.0 / (1.0 / self.size[q] + 1.0 / self.size[cand[:, -1]])
            err = 8 * _EPS32 * math.sqrt(self.d) * (self.norm[q] + max_norm) ** 2 * torch.maximum(wq, self.size[q])
            ok = (approx[:, -1] - err > best_cost) | (k == m - 1)
            self.nn[q] = cand[torch.arange(b), best]
            self.cost[q] = best_cost
            for r in torch.nonzero(~ok).squeeze(1).tolist():
                self._search_exact(int(q[r]), act)

    def _search_exact(self, slot: int, act: torch.Tensor) -> None:
        self.fallbacks += 1
        others = act[act != slot]
        cost = self.exact_costs(torch.tensor([slot]), others[None, :])[0]
        best = cost.min()
        tied = others[cost == best]
        pick = tied[torch.argmin(self.ids[tied])]
        self.nn[slot] = pick
        self.cost[slot] = best


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
    queries = torch.arange(n)
    rnd = 0
    t0 = time.perf_counter()
    while len(merges) < n - 1:
        st.search(queries, block)
        act = torch.nonzero(st.active).squeeze(1)
        nn = st.nn[act]
        recip = (st.nn[nn] == act) & (act < nn)
        a, b = act[recip], nn[recip]
        if len(a) == 0:
            raise RuntimeError("no reciprocal nearest neighbours found; this cannot happen for Ward")
        sa, sb = st.size[a], st.size[b]
        new_size = sa + sb
        heights = torch.sqrt(2.0 * st.cost[a])
        new_ids = torch.arange(next_id, next_id + len(a))
        for ia, ib, h, sz, nid in zip(st.ids[a].tolist(), st.ids[b].tolist(), heights.tolist(),
                                      new_size.tolist(), new_ids.tolist()):
            merges.append((min(ia, ib), max(ia, ib), h, sz, rnd))
            del nid
        next_id += len(a)
        # new cluster lives in slot a; slot b is retired
        st.c64[a] = (sa[:, None] * st.c64[a] + sb[:, None] * st.c64[b]) / new_size[:, None]
        st.c32[a] = st.c64[a].to(st.c32.dtype).to(st.device)
        st.sq32[a] = (st.c32[a] * st.c32[a]).sum(1)
        st.norm[a] = st.c64[a].norm(dim=1)
        st.size[a] = new_size
        st.ids[a] = new_ids
        st.active[b] = False
        merged = torch.zeros(n, dtype=torch.bool)
        merged[a] = True
        merged[b] = True
        act = torch.nonzero(st.active).squeeze(1)
        stale = act[merged[st.nn[act]]]
        queries = torch.unique(torch.cat([a, stale]))
        rnd += 1
        if progress is not None:
            progress(len(merges))
    log.debug("Ward: n=%d, %d rounds, %d float64 fallbacks, %.1f s", n, rnd, st.fallbacks, time.perf_counter() - t0)
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
    """Labels `[n]` in 0..k-1 of the k clusters left after undoing the last k-1 merges.
    Labels are numbered by each cluster's first member."""
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
    roots = np.array([find(i) for i in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    first = {}
    remap = np.empty(k, dtype=np.int64)
    for i, lab in enumerate(labels):
        if lab not in first:
            first[lab] = len(first)
    for lab, new in first.items():
        remap[lab] = new
    return remap[labels]
