"""Exact Ward clustering that scales: reciprocal-nearest-neighbour rounds over blocked
matrix products.

Ward's linkage is reducible (merging A and B never brings the union closer to a third cluster
than the nearer of A and B was), so every pair of reciprocal nearest neighbours can be merged
in the same round without changing the tree, and a cluster whose nearest neighbour was not
merged keeps it. Nearest neighbours come from float32 matrix products in `[block, chunk]` tiles
(`torch`, CPU or GPU); each row keeps its k best candidates, which are re-scored in float64,
and the float32 ranking is certified against a worst-case error bound (rows that fail are
searched again in float64), so the result is the exact Ward tree. Ties are broken by the
smaller cluster id.

Work saved on top of that:
- the first search over plain points is symmetric: each `[chunk, chunk]` tile of the
  point-to-point matrix is screened for its rows and for its columns (half the products);
- every cluster keeps a cache: its best candidates with exact costs and a lower bound on the
  cost to every other cluster. A cluster whose neighbour merged searches only its cached
  candidates and the clusters made since the cache;
- a new cluster P = A + B inherits A's and B's caches; the Lance-Williams identity turns their
  bounds into a bound for P, so most new clusters need no full search either;
- identical rows merge first at height 0 (their cost-0 ties could not be certified, only
  scanned one by one), and the distinct rows run as size-weighted Ward.

Memory is linear in n: the data, float64 centroids and one score tile at a time.

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
_WIDTH = 2 * _TOPK  # cache width: a merged cluster inherits both parents' candidates
_BIG = np.iinfo(np.int64).max
_FRESH_SHARE = 0.25  # a stale cache is tried while the clusters made since are at most this share


def _offer(vals: torch.Tensor, idx: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
           v: torch.Tensor) -> None:
    """Merge candidates into per-row top-k lists, in place.

    Args:
        vals: `[r, k]` float32, each row ascending; idx: `[r, k]` their columns.
        rows, cols, v: `[c]` new candidates (row, column, score); no (row, column) pair may
            already be in the lists.
    Keeps the k smallest per row (ties in input order: the lists first)."""
    k = vals.shape[1]
    touched = torch.unique(rows)
    R = torch.cat([touched.repeat_interleave(k), rows])
    C = torch.cat([idx[touched].reshape(-1), cols])
    V = torch.cat([vals[touched].reshape(-1), v])
    order = torch.sort(V, stable=True).indices
    order = order[torch.sort(R[order], stable=True).indices]
    R, C, V = R[order], C[order], V[order]
    rank = torch.arange(len(R), device=R.device) - torch.searchsorted(R, R)
    keep = rank < k
    vals[R[keep], rank[keep]] = V[keep]
    idx[R[keep], rank[keep]] = C[keep]


class _State:
    """Slots 0..n-1 hold clusters; a merge puts the new cluster in the lower slot and retires
    the other. Per slot: float64 centroid (and a float32 copy for the search), size, cluster id,
    nearest neighbour and its cost, and a candidate cache from its last search (full, partial
    or inherited): up to `_WIDTH` slots with exact costs, a lower bound on every other
    cluster's cost, and the round it was made."""

    def __init__(self, X: np.ndarray, sizes: np.ndarray, device: torch.device):
        self.n, self.d = X.shape
        self.c64 = torch.from_numpy(np.array(X, dtype=np.float64))  # a copy, centred in place:
        w = torch.from_numpy(sizes)
        self.c64 -= (w @ self.c64) / w.sum()  # Ward is shift-invariant; centring helps float32
        self.sq64 = (self.c64 * self.c64).sum(1)
        self.c32 = self.c64.to(device=device, dtype=torch.float32)
        self.sq32 = (self.c32 * self.c32).sum(1)
        self.size = torch.from_numpy(sizes.astype(np.float64))
        self.ids = torch.arange(self.n, dtype=torch.int64)
        self.active = torch.ones(self.n, dtype=torch.bool)
        self.nn = torch.full((self.n,), -1, dtype=torch.int64)
        self.cost = torch.full((self.n,), math.inf, dtype=torch.float64)
        self.born = torch.full((self.n,), -1, dtype=torch.int64)  # round the slot's cluster was made
        self.since = torch.full((self.n,), -1, dtype=torch.int64)  # round the cache was made
        self.cand = torch.zeros((self.n, _WIDTH), dtype=torch.int64)
        self.ccost = torch.full((self.n, _WIDTH), math.inf, dtype=torch.float64)
        self.bound = torch.zeros(self.n, dtype=torch.float64)
        self.device = device
        self.full_searches = 0
        self.partial_hits = 0
        self.fallbacks = 0
        self.exhaustive = 0
        self._inv32 = None

    def _pick(self, cost: torch.Tensor, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-wise minimum cost, ties to the smallest cluster id: (slot, cost)."""
        best = cost.min(dim=1, keepdim=True).values
        ids = torch.where(cost == best, self.ids[slots], torch.full_like(slots, _BIG))
        col = ids.argmin(dim=1, keepdim=True)
        return torch.gather(slots, 1, col).squeeze(1), best.squeeze(1)

    def full_search(self, queries: torch.Tensor, rnd: int, block: int, chunk: int) -> None:
        """Nearest neighbours of `queries` over all active clusters; refreshes their caches.

        Queries go in blocks of `block` rows, sorted by size so that a block's Ward weights are
        a few row groups; the active clusters go in chunks of `chunk` columns, so every score
        tile `[block, chunk]` stays in cache while it is scaled and screened."""
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
        queries = queries[torch.argsort(self.size[queries], stable=True)]
        for s in range(0, len(queries), block):
            q = queries[s : s + block]
            vals, cpos = self._topk_block(q, pos[q], A, A_sq, A_inv, k, chunk)
            self._certify(q, act[cpos.cpu()], vals[:, -1].cpu().double(), k, m, rnd, act)

    def _query_side(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, float]]]:
        """For queries `q` `[b]` sorted by size: `-2 c_q` `[b, d]`, `|c_q|^2` `[b, 1]` and the
        row groups of equal size `(first, end, 1 / size)`."""
        sizes, counts = torch.unique_consecutive(self.size[q], return_counts=True)
        groups, r0 = [], 0
        for size, count in zip(sizes.tolist(), counts.tolist()):
            groups.append((r0, r0 + count, 1.0 / size))
            r0 += count
        return self.c32[q] * -2.0, self.sq32[q][:, None], groups

    @staticmethod
    def _cost_tile(query: tuple, C: torch.Tensor, C_sq: torch.Tensor, C_inv: torch.Tensor) -> torch.Tensor:
        """float32 Ward costs `[b, c]` of the queries (from `_query_side`) to centroids `C`
        `[c, d]` with squared norms `C_sq` and inverse sizes `C_inv` `[c]`."""
        Qn, q_sq, groups = query
        S = torch.mm(Qn, C.T)  # -2 q.c
        S.add_(C_sq[None, :]).add_(q_sq)  # |q - c|^2
        for g0, g1, q_inv in groups:
            S[g0:g1].div_(C_inv[None, :] + q_inv)  # times w = 1 / (1/n_q + 1/n_c)
        return S

    def _topk_block(self, q: torch.Tensor, qpos: torch.Tensor, A: torch.Tensor, A_sq: torch.Tensor,
                    A_inv: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 Ward costs of `q` `[b]` (sorted by size) against the active centroids `A`
        `[m, d]`, column chunk by chunk: the k smallest per row `[b, k]` (ascending) and their
        column positions."""
        query = self._query_side(q)
        qpos = qpos.to(self.device)
        rows = torch.arange(len(q), device=self.device)
        vals = idx = None
        chunk = max(chunk, k + 1)  # the first chunk seeds k candidates besides the query itself
        for c0 in range(0, len(A), chunk):
            c1 = min(c0 + chunk, len(A))
            S = self._cost_tile(query, A[c0:c1], A_sq[c0:c1], A_inv[c0:c1])
            own = (qpos >= c0) & (qpos < c1)
            S[rows[own], qpos[own] - c0] = math.inf
            if vals is None:
                vals, idx = torch.topk(S, k, dim=1, largest=False, sorted=True)
                continue
            r, c = torch.nonzero(S < vals[:, -1:], as_tuple=True)
            if len(r):
                _offer(vals, idx, r, c + c0, S[r, c])
        return vals, idx

    def first_pass(self, tile: int, block: int) -> bool:
        """Round 0: each tile of the symmetric score matrix is computed once and screened for
        its rows and its columns, which halves the products of the first, largest search.
        Returns False (nothing done) where the data is a single tile."""
        n = self.n
        k = min(_TOPK, n - 1)
        if n < 2 * tile or tile <= k:
            return False
        # Ward cost = |a - b|^2 / (1/n_a + 1/n_b): a constant factor when all sizes are equal
        equal = not bool((self.size != self.size[0]).any())
        self._inv32 = None if equal else (1.0 / self.size).to(device=self.device, dtype=torch.float32)
        dev = self.device
        edges = list(range(0, n, tile)) + [n]
        if edges[-1] - edges[-2] <= k:  # a last sliver joins the tile before it
            del edges[-2]
        half = self.sq32 * 0.5
        vals = torch.full((n, k), math.inf, device=dev)
        idx = torch.zeros((n, k), dtype=torch.int64, device=dev)
        for t0, t1 in zip(edges[:-1], edges[1:]):  # each tile's own block primes its rows
            S = self._half_sq(t0, t1, t0, t1, half)
            S.fill_diagonal_(math.inf)
            v, i = torch.topk(S, k, dim=1, largest=False, sorted=True)
            vals[t0:t1], idx[t0:t1] = v, i + t0
        for a, (i0, i1) in enumerate(zip(edges[:-1], edges[1:])):
            for j0, j1 in zip(edges[a + 1 : -1], edges[a + 2 :]):
                S = self._half_sq(i0, i1, j0, j1, half)
                tau_i, tau_j = vals[i0:i1, -1:], vals[j0:j1, -1][None, :]
                r, c = torch.nonzero(S < torch.maximum(tau_i, tau_j), as_tuple=True)  # either side
                if len(r) == 0:
                    continue
                v = S[r, c]
                by_row, by_col = v < tau_i[r, 0], v < tau_j[0, c]
                _offer(vals, idx, torch.cat([r[by_row] + i0, c[by_col] + j0]),
                       torch.cat([c[by_row] + j0, r[by_col] + i0]), torch.cat([v[by_row], v[by_col]]))
        self.full_searches += n
        scale = float(self.size[0]) if equal else 1.0  # size-s clusters: s * |a - b|^2 / 2
        act = torch.arange(n)
        for s in range(0, n, block):
            q = act[s : s + block]
            self._certify(q, idx[s : s + block].cpu(), vals[s : s + block, -1].cpu().double() * scale, k, n, 0, act)
        return True

    def _half_sq(self, i0: int, i1: int, j0: int, j1: int, half: torch.Tensor) -> torch.Tensor:
        """float32 `|a_i - a_j|^2 / 2` for slots i0..i1 against j0..j1 `[i1 - i0, j1 - j0]`;
        with unequal sizes, the Ward cost `|a_i - a_j|^2 / (1/n_i + 1/n_j)`."""
        S = torch.mm(self.c32[i0:i1] * -1.0, self.c32[j0:j1].T)
        S.add_(half[i0:i1, None]).add_(half[None, j0:j1])
        if self._inv32 is not None:  # unequal sizes: times 1 / ((1/n_i + 1/n_j) / 2)
            S.div_((self._inv32[i0:i1, None] + self._inv32[None, j0:j1]).mul_(0.5))
        return S

    def _err(self, q: torch.Tensor, kth: torch.Tensor, max_norm: float, eps: float = _EPS32) -> torch.Tensor:
        """How far below `kth` `[b]` (the k-th float score of each query) the true cost of a
        cluster that scored at least `kth` can lie: `[b]`.

        |q|^2 + |c|^2 - 2 q.c with d-term sums and rounded inputs errs by at most
        e (|q| + |c|)^2 with e ~ (d + 8) eps, times the weight w. A far cluster cannot hide
        behind that: its true cost is also at least w_min (|c| - |q|)^2, which exceeds `kth`
        once |c| > |q| + sqrt(kth / w_min). So only norms up to that (or the largest norm)
        matter, and outliers of large norm do not weaken every row's bound."""
        act_size = self.size[self.active]
        nq, lo, hi = self.size[q], float(act_size.min()), float(act_size.max())
        w_max, w_min = nq * hi / (nq + hi), nq * lo / (nq + lo)
        a = self.sq64[q].sqrt()
        r = torch.clamp(a + torch.sqrt(torch.clamp(kth, min=0.0) / w_min), max=max_norm)
        return (self.d + 8) * eps * 1.01 * w_max * (a + r) ** 2

    def _certify(self, q: torch.Tensor, cand: torch.Tensor, kth: torch.Tensor, k: int, m: int,
                 rnd: int, act: torch.Tensor) -> None:
        """Re-score the float32 candidates `cand` `[b, k]` of `q` in float64 and keep the best.

        Every cluster outside the candidates scored at least `kth` `[b]` (the k-th float32 cost)
        in float32, so its true cost is at least `kth - _err(...)`. Rows whose best does not
        beat that bound are searched again in float64."""
        exact = self._exact_rows(q, cand)
        nn, best = self._pick(exact, cand)
        max_norm = float(self.sq64[act].max().sqrt())
        bound = kth - self._err(q, kth, max_norm) if k < m - 1 else torch.full((len(q),), math.inf, dtype=torch.float64)
        ok = best < bound
        ok |= k == m - 1
        self.nn[q], self.cost[q] = nn, best
        self.cand[q, :k], self.ccost[q, :k] = cand, exact
        self.ccost[q, k:] = math.inf
        self.bound[q] = bound
        self.since[q] = rnd
        if not bool(ok.all()):
            self._search64(q[~ok], k, act)

    def _search64(self, q: torch.Tensor, k: int, act: torch.Tensor) -> None:
        """The float32 search's fallback: the same blocked search in float64 for the rows `q`
        it could not certify (near-ties far below float32's resolution); rows float64 cannot
        certify either are compared one by one with the exact difference form."""
        self.fallbacks += len(q)
        inactive = ~self.active
        inv = 1.0 / self.size
        max_norm = float(self.sq64[act].max().sqrt())
        for s in range(0, len(q), 64):
            qq = q[s : s + 64]
            S = torch.mm(self.c64[qq], self.c64.T).mul_(-2.0).add_(self.sq64[None, :]).add_(self.sq64[qq][:, None])
            S.div_(inv[None, :] + inv[qq][:, None])
            S[:, inactive] = math.inf
            S[torch.arange(len(qq)), qq] = math.inf
            vals, cand = torch.topk(S, k, dim=1, largest=False, sorted=True)
            exact = self._exact_rows(qq, cand)
            nn, best = self._pick(exact, cand)
            bound = vals[:, -1] - self._err(qq, vals[:, -1], max_norm, eps=float(np.finfo(np.float64).eps))
            self.nn[qq], self.cost[qq] = nn, best
            self.cand[qq, :k], self.ccost[qq, :k] = cand, exact
            self.bound[qq] = bound
            for r in torch.nonzero(~(best < bound)).squeeze(1).tolist():
                self._exhaustive(int(qq[r]), act)

    def _exact_rows(self, q: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """float64 Ward costs `[b, k]` of `q` `[b]` to `cand` `[b, k]`, about 1,024 pairs at a
        time so the differences stay in cache."""
        sq_sum = torch.empty(cand.shape, dtype=torch.float64)
        step = max(1, 1024 // max(1, cand.shape[1]))
        for s in range(0, len(q), step):
            diff = self.c64[cand[s : s + step]]
            diff.sub_(self.c64[q[s : s + step]][:, None, :])  # c - q: the same squares as q - c
            sq_sum[s : s + step] = diff.square_().sum(-1)
        sq, sc = self.size[q][:, None], self.size[cand]
        return (sq * sc / (sq + sc)) * sq_sum

    def _exhaustive(self, slot: int, act: torch.Tensor) -> None:
        """Exact search over everything, for a row not even float64 products could certify."""
        self.exhaustive += 1
        others = act[act != slot]
        q = torch.tensor([slot])
        diff = self.c64[slot][None, :] - self.c64[others]
        cost = (diff * diff).sum(1) * (self.size[slot] * self.size[others] / (self.size[slot] + self.size[others]))
        nn, best = self._pick(cost[None, :], others[None, :])
        self.nn[q], self.cost[q] = nn, best
        self.bound[q] = -math.inf  # no cache: the next time it goes stale, search fully

    def inherit(self, a: torch.Tensor, b: torch.Tensor, size_a: torch.Tensor, size_b: torch.Tensor,
                cost_ab: torch.Tensor) -> None:
        """Give each new cluster P = A + B (now in slot a; b retired) a cache built from its
        parents' caches, so its nearest neighbour can be certified without a full search.

        Candidates: the parents' cached clusters still unchanged, with exact costs to P; every
        cluster made since the older parent cache is screened later as fresh. Any other cluster
        C was outside both caches, so cost(A, C) >= bound_A and cost(B, C) >= bound_B, and the
        Lance-Williams identity for Ward,
        cost(P, C) = ((n_A + n_C) cost(A, C) + (n_B + n_C) cost(B, C) - n_C cost(A, B)) / (n_P + n_C),
        bounds cost(P, C) from below; the bound is monotone in n_C, so the smallest and largest
        active sizes give its minimum."""
        since = torch.minimum(self.since[a], self.since[b])
        cand = torch.cat([self.cand[a], self.cand[b]], dim=1)
        cost = torch.cat([self.ccost[a], self.ccost[b]], dim=1)
        born_ok = torch.cat([self.born[self.cand[a]] <= self.since[a][:, None],
                             self.born[self.cand[b]] <= self.since[b][:, None]], dim=1)
        valid = self.active[cand] & born_ok & torch.isfinite(cost) & (cand != a[:, None])
        exact = torch.full(cand.shape, math.inf, dtype=torch.float64)
        r, c = torch.nonzero(valid, as_tuple=True)
        exact[r, c] = self._exact_rows(a[r], cand[r, c][:, None])[:, 0]
        exact, order = torch.sort(exact, dim=1, stable=True)
        cand = torch.gather(cand, 1, order)
        act_sizes = self.size[self.active]
        lo, hi = float(act_sizes.min()), float(act_sizes.max())
        b_a, b_b = self.bound[a], self.bound[b]
        alpha = size_a * b_a + size_b * b_b
        beta = b_a + b_b - cost_ab
        gamma = size_a + size_b
        lb = torch.minimum((alpha + beta * lo) / (gamma + lo), (alpha + beta * hi) / (gamma + hi))
        lb = torch.where(torch.isnan(lb) | (b_a == -math.inf) | (b_b == -math.inf), -math.inf, lb)
        lb = torch.where(torch.isfinite(lb), lb - 1e-9 * lb.abs(), lb)  # float64 rounding of the centroids
        self.cand[a], self.ccost[a] = cand[:, :_WIDTH], exact[:, :_WIDTH]
        self.bound[a] = torch.minimum(lb, exact[:, _WIDTH])  # dropped candidates are outside too
        self.since[a] = since

    def _partial_block(self, q: torch.Tensor, since: torch.Tensor, fresh: tuple, chunk: int) -> tuple:
        """Search `q` `[b]` (sorted by size) over their still-valid cached candidates and the
        clusters `fresh` = (slots `[f]`, float32 centroids, squared norms, inverse sizes,
        their largest norm, each query's own position among them or beyond), which hold
        every cluster made since the caches.

        Returns (nearest slot, its cost) `[b]` and a refreshed cache: candidates and exact
        costs `[b, <= _WIDTH]` and the bound on every other cluster, the smallest of the old
        bound, the float32 k-th fresh cost minus its error bound and the best dropped cost."""
        cand = self.cand[q]
        valid = self.active[cand] & (self.born[cand] <= since[:, None])
        cost = torch.where(valid, self.ccost[q], math.inf)
        bound = self.bound[q].clone()
        f_slots, F, F_sq, F_inv, f_norm, qpos = fresh
        if len(f_slots):
            k = min(_TOPK, len(f_slots))
            vals, pos = self._topk_block(q, qpos, F, F_sq, F_inv, k, chunk)
            f_cand = f_slots[pos.cpu()]
            f_cost = torch.where(f_cand == q[:, None], math.inf, self._exact_rows(q, f_cand))
            if k < len(f_slots):
                kth = vals[:, -1].cpu().double()
                bound = torch.minimum(bound, kth - self._err(q, kth, f_norm))
            cand, cost = torch.cat([cand, f_cand], dim=1), torch.cat([cost, f_cost], dim=1)
        cost, order = torch.sort(cost, dim=1, stable=True)
        cand = torch.gather(cand, 1, order)
        nn, best = self._pick(cost, cand)
        if cand.shape[1] > _WIDTH:
            bound = torch.minimum(bound, cost[:, _WIDTH])
            cand, cost = cand[:, :_WIDTH], cost[:, :_WIDTH]
        return nn, best, cand, cost, bound

    def partial_search(self, queries: torch.Tensor, rnd: int, block: int, chunk: int) -> torch.Tensor:
        """For clusters whose neighbour merged, and new clusters (with caches inherited from
        their parents): the best of their cached candidates that are unchanged since the cache
        was made, and of every cluster made since; certified when it beats the cache's bound on
        all other clusters, and then the cache is refreshed to this round. Returns the queries
        this could not certify (they need a full search)."""
        if len(queries) == 0:
            return queries
        act = torch.nonzero(self.active).squeeze(1)
        act = act[torch.argsort(self.born[act], descending=True, stable=True)]  # newest first
        born = self.born[act]
        since = self.since[queries]
        n_fresh = len(act) - torch.searchsorted(born.flip(0), since, right=True)  # born > since
        ok = (since >= 0) & (n_fresh <= len(act) * _FRESH_SHARE)
        failed = [queries[~ok]]
        queries, n_fresh = queries[ok], n_fresh[ok]
        if len(queries) == 0:
            return failed[0]
        # blocks of queries with similar caches; each block screens the clusters made since its
        # oldest cache (a prefix of the newest-first order; more candidates never hurt)
        order = np.lexsort((self.size[queries].numpy(), -n_fresh.numpy()))
        queries, n_fresh = queries[order], n_fresh[order]
        f_max = int(n_fresh[0])
        where = torch.full((self.n,), -1, dtype=torch.int64)
        where[act] = torch.arange(len(act))  # a query's own column, masked: it can be fresh too
        fd = act[:f_max].to(self.device)
        F, F_sq = self.c32[fd], self.sq32[fd]
        F_inv = (1.0 / self.size[act[:f_max]]).to(self.c32)
        for s in range(0, len(queries), block):
            q = queries[s : s + block]
            f = int(n_fresh[s])
            f_norm = float(self.sq64[act[:f]].max().sqrt()) if f else 0.0
            fresh = (act[:f], F[:f], F_sq[:f], F_inv[:f], f_norm, where[q])
            nn, best, cand, cost, bound = self._partial_block(q, self.since[q], fresh, chunk)
            ok = best < bound
            qo = q[ok]
            self.nn[qo], self.cost[qo] = nn[ok], best[ok]
            self.cand[qo, : cand.shape[1]], self.ccost[qo, : cand.shape[1]] = cand[ok], cost[ok]
            self.ccost[qo, cand.shape[1] :] = math.inf
            self.bound[qo], self.since[qo] = bound[ok], rnd
            self.partial_hits += int(ok.sum())
            failed.append(q[~ok])
        return torch.cat(failed)


def ward_linkage(
    X: np.ndarray,
    sizes: np.ndarray | None = None,
    block: int = 2048,
    device: str = "cpu",
    chunk: int = 2048,
    progress=None,
) -> np.ndarray:
    """Exact Ward linkage of the rows of `X`.

    Args:
        X: `[n, d]` points (or cluster centroids).
        sizes: `[n]` positive weights: each row stands for that many points at its position
            (k-means micro-clusters); default all 1.
        block: query rows per matrix product.
        chunk: columns per matrix product (score tiles are `[block, chunk]`; the first pass
            over plain points uses `[chunk, chunk]` tiles).
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
    if sizes is None:
        first, inverse, counts = _duplicate_groups(X)
        if len(first) < n:  # identical rows merge first at height 0; the rest is weighted Ward
            if len(first) == 1:
                return _with_duplicates(np.empty((0, 4)), inverse, counts)
            done = n - len(first)
            Zu = ward_linkage(X[first], sizes=counts, block=block, device=device, chunk=chunk,
                              progress=None if progress is None else lambda m: progress(m + done))
            return _with_duplicates(Zu, inverse, counts)
    sizes = np.ones(n) if sizes is None else np.asarray(sizes, dtype=np.float64)
    st = _State(X, sizes, torch.device(device))
    merges: list[tuple[int, int, float, float, int]] = []
    next_id = n
    rnd = 0
    t0 = time.perf_counter()
    if not st.first_pass(chunk, block):
        st.full_search(torch.arange(n), rnd, block, chunk)
    stale = torch.arange(0)  # searched from caches first; what they cannot certify, fully
    while len(merges) < n - 1:
        st.full_search(torch.sort(st.partial_search(stale, rnd, block, chunk)).values, rnd, block, chunk)
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
        st.inherit(a, b, sa, sb, st.cost[a])
        merged = torch.zeros(n, dtype=torch.bool)
        merged[a] = True
        merged[b] = True
        act = torch.nonzero(st.active).squeeze(1)
        stale = torch.cat([a, act[merged[st.nn[act]] & ~merged[act]]])
        if progress is not None:
            progress(len(merges))
    log.debug("Ward: n=%d, %d rounds, %d full searches, %d cache hits, %d float64 fallbacks, %d exhaustive, %.1f s",
              n, rnd, st.full_searches, st.partial_hits, st.fallbacks, st.exhaustive, time.perf_counter() - t0)
    return _to_scipy(merges, n)


def _duplicate_groups(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Identical rows of `X` `[n, d]`: each distinct row's first index `[u]` (ascending), the
    distinct row of every row `[n]`, and the multiplicities `[u]`."""
    rows = np.ascontiguousarray(X).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, first, inverse, counts = np.unique(rows, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()], counts[order]


def _with_duplicates(Zu: np.ndarray, inverse: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The linkage of all n rows from the linkage `Zu` of the u distinct rows (weighted by
    `counts`): each group of identical rows first merges at height 0, in index order."""
    n, u = len(inverse), len(counts)
    members = np.argsort(inverse, kind="stable")  # grouped, each group in index order
    starts = np.cumsum(counts) - counts
    leaf = members[starts].copy()  # the cluster id that stands for each distinct row
    zero, next_id = [], n
    for g in np.nonzero(counts > 1)[0]:
        cur = leaf[g]
        for size, m in enumerate(members[starts[g] + 1 : starts[g] + counts[g]], start=2):
            zero.append((min(cur, m), max(cur, m), 0.0, size))
            cur, next_id = next_id, next_id + 1
        leaf[g] = cur
    Z = np.array(zero, dtype=np.float64).reshape(-1, 4)
    if len(Zu):
        ids = Zu[:, :2].astype(np.int64)
        mapped = np.where(ids < u, leaf[np.minimum(ids, u - 1)], ids - u + n + len(zero))
        Zw = np.column_stack([np.sort(mapped, axis=1), Zu[:, 2:]]).astype(np.float64)
        Z = np.concatenate([Z, Zw])
    return Z


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
