"""Exact Fisher–Freeman–Halton p-value for r x c tables by a network algorithm.

Internal module used by :func:`analysis.contingency.fisher_exact_rxc`.

The conditional probability of a table ``x`` with fixed margins ``R`` (rows), ``C``
(columns) and total ``N`` is ``P(x) = prod(R!) prod(C!) / (N! prod(x_ij!))``.  Writing
``f(x) = -sum log x_ij!`` the p-value is the total probability of the tables with
``f(x) <= f(x_obs) + tol`` with ``tol = 1e-7``, i.e. ``P <= P_obs e^tol ≈ P_obs (1 + 1e-7)``.

Tolerance, and how it differs from R.  Tables whose probability equals ``P_obs`` up to
rounding (e.g. the observed table with two rows swapped when their margins are equal) must
count, so the comparison needs a tolerance above the rounding error of sums of log
factorials (about 1e-13 relative here).  R uses two: ``fisher.test`` on a 2 x 2 table counts
``d <= d_obs * (1 + 10^-7)`` (``relErr`` in its R code), while its r x c engine FEXACT
(``src/library/stats/src/fexact.c``, ACM TOMS 643) starts the observed path length at
``obs = tol`` with ``tol = 3.45254e-7`` ("the square root of the smallest relative
spacing"), i.e. counts ``log P <= log P_obs + 3.45254e-7``, a relative tolerance of about
3.45e-7, and also merges past path lengths closer than ``tol``.  We use 1e-7 for every
table: it is R's 2 x 2 rule (up to e^tol - 1 - tol = 5e-15), ~1e6 times the rounding error, and it
counts fewer near-ties that are not true ties.  Our p-value can differ from R's r x c value
only through tables whose probability lies within (1e-7, 3.45e-7] relative of ``P_obs``; the 43
R reference p-values (tests/fixtures/r_reference) agree with ours to 1e-6 relative.

Network (Mehta & Patel 1983, doi:10.1080/01621459.1983.10477989): the table is filled one
column at a time; a node is the vector of row sums still to be filled (sorted, because the
future does not depend on the order of the rows); each node keeps a list of distinct *past*
values ``v`` (sum of ``-log x!`` over the filled columns; paths with equal ``v`` are merged
and their probability masses added).  For an entry ``(node, v)`` with future values bounded by
``lo <= f_future <= hi``:

* ``v + hi <= obs + tol``: every completion counts; the total mass of all completions is
  closed-form (multinomial / Vandermonde identity)
  ``sum prod 1/x! = M! / (prod s_i! prod C_j!)``;
* ``v + lo > obs + tol``: no completion counts;
* otherwise the entry is expanded by the next column.

``hi`` is the minimum of three valid upper bounds on the most probable completion (a
Lagrangian bound with multipliers from the independence table, and the row-wise and
column-wise even splits); ``lo`` is the maximum of two valid lower bounds on the least probable
completion (row-wise and column-wise greedy fills).

The last three columns are not expanded into merged entries: for every transition of an entry
by the third-to-last column into a child state, the completions of the child (the last two
columns) are enumerated exactly, sorted, and turned into cumulative masses, so the child's
largest and smallest completion values are exact bounds; the entries in between get their exact
mass by a binary search (:class:`_Groups`).  Columns are processed largest first and then in
increasing order (the small columns in the middle stages, where the entries multiply).
Everything is in log space and vectorised with numpy; ``_MAX_ROWS`` caps the memory (beyond it
:class:`BudgetExceeded` is raised, as for the time budget).

Verified against R ``fisher.test`` (tests/fixtures/r_reference) and against full enumeration of
all tables with the given margins (tests/analysis/test_contingency.py).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from scipy.special import gammaln, logsumexp

__all__ = ["fexact_pvalue", "BudgetExceeded", "TOL"]

TOL = 1e-7            # log-space tolerance: P <= P_obs * (1 + 1e-7) (module notes: R uses 3.45e-7 for r x c)
_MERGE = 1e-9         # past values closer than this (same grid cell) are merged
_CHUNK = 2_000_000    # max child entries materialised at once
# Max transitions / entries held at once (~1 GB); beyond: BudgetExceeded.  Deterministic (a
# row count).  The 43 R reference tables need at most 9.2 million (3 x 4, n = 600); a 16 x 3
# multi-select column (n = 256) asks for 17.5 million after ~1 s and 0.24 GB, where the former
# cap of 25 million let it run ~25 s to 2.4 GB before giving up (tests/fixtures/clinical_workbook,
# BENCHMARKS.md).
_MAX_ROWS = 12_000_000


class BudgetExceeded(RuntimeError):
    """The exact computation would exceed its work budget or memory cap (or a caller's time limit).

    ``kind`` is ``'work'``, ``'memory'`` or ``'time'`` and ``limit`` the limit that was hit
    (see :func:`analysis.contingency.fallback_reason` for the sentence reported).
    """

    def __init__(self, message: str = "", kind: str = "time", limit=None):
        super().__init__(message)
        self.kind = kind
        self.limit = limit


_work = threading.local()  # per-call work counter (see fexact_pvalue's ``max_work``)


def _check_size(n: int) -> None:
    """Memory cap on one materialised block, and the deterministic work budget.

    Every block of ``n`` network rows the algorithm materialises is charged to the call's work
    counter; unlike wall-clock time, that count is the same on every machine and every run,
    so a work budget makes the exact-or-Monte-Carlo decision reproducible.
    """
    if n > _MAX_ROWS:
        raise BudgetExceeded(f"{n} network rows exceed the memory cap of {_MAX_ROWS}", kind="memory",
                             limit=_MAX_ROWS)
    _charge(n)


def _charge(n: int) -> None:
    """Charge ``n`` units (rows materialised or binary-search queries) to the work budget."""
    limit = getattr(_work, "limit", None)
    if limit is not None:
        _work.used += n
        if _work.used > limit:
            raise BudgetExceeded(f"work budget of {limit} network rows exceeded", kind="work", limit=limit)


def _keys(states: np.ndarray, base: int) -> np.ndarray:
    """Integer key of each (sorted) state row."""
    r = states.shape[1]
    if base ** r < 2 ** 62:
        mult = base ** np.arange(r, dtype=np.int64)
        return states.astype(np.int64) @ mult
    _, inv = np.unique(states, axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


def _unique_states(states: np.ndarray, base: int):
    """Distinct rows of ``states`` (all with the same sum) and the inverse index.

    The last coordinate is implied by the common sum, so when ``base ** (r - 1)`` is small the
    keys are marked in a dense array (linear time) instead of sorted.
    """
    r = states.shape[1]
    if r >= 2 and base ** (r - 1) <= 1 << 24:
        mult = base ** np.arange(r - 1, dtype=np.int64)
        key = states[:, :-1].astype(np.int64) @ mult
        mark = np.zeros(base ** (r - 1), dtype=np.int64)
        mark[key] = 1
        ukeys = np.flatnonzero(mark)
        mark[ukeys] = np.arange(len(ukeys))
        inv = mark[key]
        first = np.empty(len(ukeys), dtype=np.int64)
        first[inv] = np.arange(len(key))
        return states[first], inv
    _, first, inv = np.unique(_keys(states, base), return_index=True, return_inverse=True)
    return states[first], inv.reshape(-1)


def _transition_cols(S: np.ndarray, total: int):
    """All column vectors ``x`` with ``sum(x) == total`` and ``0 <= x <= s`` for each state.

    Returns ``(parent, cols)``: ``parent[t]`` indexes ``S``; ``cols[i][t]`` is ``x_i`` (int32).
    """
    S = S.astype(np.int32)
    U, r = S.shape
    par = np.arange(U, dtype=np.int32)
    rem = np.full(U, total, dtype=np.int32)
    cols = []
    tails = np.cumsum(S[:, ::-1], axis=1)[:, ::-1]  # tails[:, i] = sum(S[:, i:])
    for i in range(r - 1):
        tail = tails[par, i + 1]
        lo = np.maximum(0, rem - tail)
        hi = np.minimum(S[par, i], rem)
        cnt = np.maximum(hi - lo + 1, 0)
        tot = int(cnt.sum())
        _check_size(tot)
        starts = np.repeat(np.cumsum(cnt) - cnt, cnt)
        xi = (np.repeat(lo, cnt) + (np.arange(tot, dtype=np.int64) - starts)).astype(np.int32)
        par = np.repeat(par, cnt)
        rem = np.repeat(rem, cnt) - xi
        cols = [np.repeat(c_, cnt) for c_ in cols]
        cols.append(xi)
    cols.append(rem)
    return par.astype(np.int64), cols


def _transitions(S: np.ndarray, total: int):
    """As :func:`_transition_cols` with the columns stacked into ``X`` (``X[t]`` = column)."""
    par, cols = _transition_cols(S, total)
    return par, np.stack(cols, axis=1)


def _children(S: np.ndarray, total: int, lf: np.ndarray):
    """Transitions of every state by a column of ``total``: parent, ``-sum log x!``, child state.

    The child (remaining row sums) is returned in canonical (decreasing) order.
    """
    par, cols = _transition_cols(S, total)
    inc = -lf[cols[0]]
    for c_ in cols[1:]:
        inc -= lf[c_]
    S32 = S.astype(np.int32)
    ch = [S32[par, i] - cols[i] for i in range(len(cols))]
    del cols
    if len(ch) == 3:  # sorting network: much faster than np.sort on n x 3
        a, b, c = ch
        hi, lo = np.maximum(a, b), np.minimum(a, b)
        m = np.minimum(hi, c)
        child = np.stack([np.maximum(hi, c), np.maximum(lo, m), np.minimum(lo, m)], axis=1)
    else:
        child = -np.sort(-np.stack(ch, axis=1), axis=1)
    return par, inc, child


class _Groups:
    """Values grouped by an integer id, sorted within each group, with per-group log prefix masses.

    ``count(gq, q)`` is, for each query, the number of values of group ``gq`` that are
    ``<= q``; it is one vectorised binary search on the composite keys ``g W + (v - lo_g)``
    (``W`` a power of two larger than every group's range, so the groups cannot interleave).
    The composite key rounds ``v`` to ``ulp(G W)`` (about 1e-9 for the largest networks), far
    below the comparison tolerance ``TOL``; ties of the exact comparison are kept by the
    monotone rounding (``v <= q`` is always counted).
    """

    def __init__(self, g, v, lm, n_groups, check=lambda: None):
        if len(g) > 64 * max(n_groups, 1) and np.all(g[1:] >= g[:-1]):
            # few large groups, already in group order: sort each group on its own
            order = np.arange(len(g))
            cnt = np.bincount(g, minlength=n_groups)
            st = np.cumsum(cnt) - cnt
            for i, gi in enumerate(np.flatnonzero(cnt)):
                if i % 512 == 511:
                    check()
                a, b = st[gi], st[gi] + cnt[gi]
                order[a:b] = a + np.argsort(v[a:b], kind="stable")
        else:
            order = np.lexsort((v, g))
        self.g, self.v, self.lm = g[order], v[order], lm[order]
        self.cnt = np.bincount(self.g, minlength=n_groups)
        self.start = np.cumsum(self.cnt) - self.cnt
        nz = self.cnt > 0
        self.lo = np.zeros(n_groups)
        self.hi = np.zeros(n_groups)
        self.lo[nz] = self.v[self.start[nz]]
        self.hi[nz] = self.v[self.start[nz] + self.cnt[nz] - 1]
        rng = float((self.hi - self.lo).max()) if n_groups else 0.0
        self.W = 2.0 ** np.ceil(np.log2(rng + 4.0))
        self.key = self.g * self.W + (self.v - self.lo[self.g])
        # log prefix masses, each group scaled by its own largest mass (no cancellation)
        self.logpre = np.empty(len(self.v))
        one = self.cnt == 1
        self.logpre[self.start[one]] = self.lm[self.start[one]]
        for i, gi in enumerate(np.flatnonzero(self.cnt > 1)):
            if i % 512 == 511:
                check()
            a, b = self.start[gi], self.start[gi] + self.cnt[gi]
            seg = self.lm[a:b]
            m = seg.max()
            with np.errstate(divide="ignore"):
                self.logpre[a:b] = np.log(np.cumsum(np.exp(seg - m))) + m

    def count(self, gq, q):
        rel = np.clip(q - self.lo[gq], -1.0, self.W - 1.0)
        return np.searchsorted(self.key, gq * self.W + rel, side="right") - self.start[gq]


class _Net:
    def __init__(self, table: np.ndarray, deadline: float | None):
        t = np.asarray(table, dtype=np.int64)
        if t.shape[0] > t.shape[1]:
            t = t.T  # the state (row sums) lives in the smaller dimension
        self.rows = np.sort(t.sum(axis=1))[::-1]
        # Column order: the largest column first (one entry per state after it), then the rest
        # in increasing order, so that the middle stages (where entries multiply) use the small
        # columns and the large ones fall into the exactly enumerated last columns.  Measured
        # on the bench tables (3 x 4..6, n = 300..600) this beats decreasing order by 1.2-16x.
        cs = np.sort(t.sum(axis=0))
        self.cols = np.r_[cs[-1:], cs[:-1]]
        self.N = int(t.sum())
        self.lf = gammaln(np.arange(self.N + 2, dtype=float) + 1.0)
        self.obs = -float(self.lf[t].sum())
        self.thr = self.obs + TOL
        self.logconst = float(self.lf[self.rows].sum() + self.lf[self.cols].sum() - self.lf[self.N])
        self.deadline = deadline
        self.contrib: list[np.ndarray] = []
        self.base = self.N + 1

    def _check_time(self):
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise BudgetExceeded("time budget exceeded", kind="time")

    # ---- bounds on the future value f = -sum log x! over completions of each state ----
    def _bounds(self, S: np.ndarray, rem_cols: np.ndarray):
        lf = self.lf
        M = S.sum(axis=1)
        total = lf[M] - lf[S].sum(axis=1) - lf[rem_cols].sum()
        cdesc = np.sort(rem_cols)[::-1]
        k = len(cdesc)
        r = S.shape[1]
        # upper bound 1: Lagrangian with multipliers -log(E_ij), E = s C / M
        Mf = np.where(M > 0, M, 1).astype(float)
        E = S[:, :, None].astype(float) * cdesc[None, None, :].astype(float) / Mf[:, None, None]
        fl = np.floor(E)
        with np.errstate(divide="ignore", invalid="ignore"):
            term = -gammaln(fl + 1.0) - np.where(E > 0, np.log(np.where(E > 0, E, 1.0)) * (E - fl), 0.0)
        ub = term.sum(axis=(1, 2))
        # upper bound 2: each column split as evenly as possible over r rows (row caps ignored)
        q, m = np.divmod(cdesc, r)
        ub_col = -(m * lf[q + 1] + (r - m) * lf[q]).sum()
        # upper bound 3: each row split evenly over the k remaining columns
        q, m = np.divmod(S, k)
        ub_row = -(m * lf[q + 1] + (k - m) * lf[q]).sum(axis=1)
        ub = np.minimum(np.minimum(ub, ub_col), ub_row)
        # lower bound 1: each column filled greedily into the largest row sums
        Sd = -np.sort(-S, axis=1)
        lb_col = np.zeros(len(S))
        for c_ in cdesc:
            left = np.full(len(S), c_, dtype=np.int64)
            for i in range(r):
                x = np.minimum(Sd[:, i], left)
                lb_col -= lf[x]
                left -= x
        # lower bound 2: each row filled greedily into the largest column sums
        lb_row = np.zeros(len(S))
        left = S.copy()
        for c_ in cdesc:
            x = np.minimum(left, c_)
            lb_row -= lf[x].sum(axis=1)
            left -= x
        lb = np.maximum(lb_col, lb_row)
        return total, ub, lb

    def _classify(self, S_u, inv, v, lm, rem_cols):
        """Add fully-counting entries to the result; return mask of undecided entries."""
        total, ub, lb = self._bounds(S_u, rem_cols)
        hi = v + ub[inv]
        lo = v + lb[inv]
        take = hi <= self.thr
        if take.any():
            self.contrib.append(lm[take] + total[inv[take]])
        return (~take) & (lo <= self.thr)

    def _exact_last_two(self, S_u, inv, v, lm, c1):
        """Entries with two columns left: enumerate the completions of every state exactly."""
        lf = self.lf
        self._check_time()
        par, X = _transitions(S_u, int(c1))
        self._check_time()
        f = -lf[X].sum(axis=1) - lf[S_u[par] - X].sum(axis=1)
        gmax = np.full(len(S_u), -np.inf)
        np.maximum.at(gmax, par, f)
        n_f, n_e = len(f), len(v)
        grp = np.concatenate([par, inv])
        val = np.concatenate([f, self.thr - v])
        typ = np.concatenate([np.zeros(n_f, np.int8), np.ones(n_e, np.int8)])
        self._check_time()
        order = np.lexsort((typ, val, grp))
        self._check_time()
        is_f = typ[order] == 0
        w = np.zeros(n_f + n_e)
        of = order[is_f]
        w[is_f] = np.exp(f[of] - gmax[par[of]])
        cum = np.cumsum(w)
        # cumulative mass at the start of each group
        g_sorted = grp[order]
        first = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
        start_cum = np.maximum.accumulate(np.where(first, cum - w, -np.inf))
        mass = (cum - start_cum)[~is_f]
        e_idx = order[~is_f] - n_f
        ok = mass > 0
        if ok.any():
            e = e_idx[ok]
            self.contrib.append(lm[e] + gmax[inv[e]] + np.log(mass[ok]))

    def run(self) -> float:
        c = len(self.cols)
        states = self.rows[None, :].copy()
        v = np.zeros(1)
        lm = np.zeros(1)
        for d in range(c - 1):
            self._check_time()
            rem_cols = self.cols[d:]
            keys = _keys(states, self.base)
            ukeys, first, inv = np.unique(keys, return_index=True, return_inverse=True)
            S_u = states[first]
            keep = self._classify(S_u, inv, v, lm, rem_cols)
            if not keep.any():
                break
            used, inv = np.unique(inv[keep], return_inverse=True)
            S_u, v, lm = S_u[used], v[keep], lm[keep]
            if c - d == 2:
                self._exact_last_two(S_u, inv, v, lm, self.cols[d])
                break
            if c - d == 3:
                self._join_last_three(S_u, inv, v, lm, int(self.cols[d]), int(self.cols[d + 1]))
                break
            states, v, lm = self._expand(S_u, inv, v, lm, int(self.cols[d]), self.cols[d + 1:])
            if len(v) == 0:
                break
        if not self.contrib:
            return 0.0
        p = float(np.exp(self.logconst + logsumexp(np.concatenate(self.contrib))))
        return min(max(p, 0.0), 1.0)

    def _expand(self, S_u, inv, v, lm, col, rem_child):
        """Children of the entries by the next column, classified without materialising them.

        Entries are sorted by past value within each parent state; for every transition
        (parent -> child state, increment ``inc``) the children that count entirely form a
        prefix (``v <= thr - ub - inc``) whose mass is a per-parent prefix sum, and the
        undecided ones form the next slice (``v <= thr - lb - inc``); only those are built.
        """
        lf = self.lf
        par, inc, child = _children(S_u, col, lf)
        cS, cinv = _unique_states(child, self.base)
        total_c, ub_c, lb_c = self._bounds(cS, rem_child)
        self._check_time()
        E = _Groups(inv, v, lm, len(S_u), self._check_time)
        r_take = E.count(par, self.thr - ub_c[cinv] - inc)
        r_keep = np.maximum(E.count(par, self.thr - lb_c[cinv] - inc), r_take)
        has = r_take > 0
        if has.any():
            last = E.start[par[has]] + r_take[has] - 1
            self.contrib.append(E.logpre[last] + inc[has] + total_c[cinv[has]])
        cnt = r_keep - r_take
        tot = int(cnt.sum())
        if tot == 0:
            return np.zeros((0, S_u.shape[1]), np.int64), np.zeros(0), np.zeros(0)
        _check_size(tot)
        self._check_time()
        t_idx = np.repeat(np.arange(len(par)), cnt)
        offs = np.arange(tot) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        e_idx = E.start[par[t_idx]] + r_take[t_idx] + offs
        states = child[t_idx]
        nv = E.v[e_idx] + inc[t_idx]
        nm = E.lm[e_idx] + inc[t_idx]
        self._check_time()
        return self._merge(states, nv, nm)

    def _join_last_three(self, S_u, inv, v, lm, col, col2):
        """Entries with three columns left: join with the exact completions of every child.

        For each transition (parent state -> child state by the next column, increment
        ``inc``) the completions of the child (last two columns) are enumerated exactly and
        sorted, so their largest and smallest values ``wmax``, ``wmin`` are exact.  Entries
        with ``v + inc + wmax <= thr`` count entirely (per-parent prefix mass times the
        child's total), entries with ``v + inc + wmin > thr`` not at all, and each entry in
        between gets the exact mass of the child's completions with ``w <= thr - inc - v``
        by a binary search in the child's sorted cumulative masses.  Only the completions
        inside the range of queries a child receives are sorted (those below the range
        count for every query and enter as one base mass; those above count for none).
        Nothing is merged or materialised beyond one chunk of queries.  The composite search
        keys round at ``ulp(G W)`` (about 1e-10 here), far below ``TOL``.
        """
        lf = self.lf
        par, inc, child = _children(S_u, col, lf)
        cS, cinv = _unique_states(child, self.base)
        del child
        last = np.array([col2, int(S_u[0].sum()) - col - col2])
        total_c, ub_c, lb_c = self._bounds(cS, last)
        self._check_time()
        E = _Groups(inv, v, lm, len(S_u), self._check_time)
        r_take = E.count(par, self.thr - ub_c[cinv] - inc)
        r_keep = np.maximum(E.count(par, self.thr - lb_c[cinv] - inc), r_take)
        # children with an undecided transition get their completions enumerated exactly
        need = np.zeros(len(cS), dtype=bool)
        need[cinv[r_keep > r_take]] = True
        idx = np.flatnonzero(need)
        bmap = np.full(len(cS), -1, dtype=np.int64)
        bmap[idx] = np.arange(len(idx))
        cpar, ycols = _transition_cols(cS[idx], col2)
        cS32 = cS[idx].astype(np.int32)
        fw = np.zeros(len(cpar))
        for i, y in enumerate(ycols):
            fw -= lf[y]
            fw -= lf[cS32[cpar, i] - y]
        del ycols
        _charge(len(fw))
        self._check_time()
        nb = len(idx)
        bcnt = np.bincount(cpar, minlength=nb)  # >= 1: every state has a completion
        bst = np.cumsum(bcnt) - bcnt
        wmax = np.maximum.reduceat(fw, bst)
        wmin = np.minimum.reduceat(fw, bst)
        tn = np.flatnonzero(need[cinv])
        bt = bmap[cinv[tn]]
        r_take[tn] = E.count(par[tn], self.thr - wmax[bt] - inc[tn])
        r_keep[tn] = np.maximum(E.count(par[tn], self.thr - wmin[bt] - inc[tn]), r_take[tn])
        has = r_take > 0
        if has.any():
            pos = E.start[par[has]] + r_take[has] - 1
            self.contrib.append(E.logpre[pos] + inc[has] + total_c[cinv[has]])
        cinv = bmap[cinv]
        # Only completions inside the range of the queries a child receives need sorting:
        # those below it count for every query (a base mass), those above for none.
        und = np.flatnonzero(r_keep > r_take)
        q_hi = (self.thr - inc[und]) - E.v[E.start[par[und]] + r_take[und]]
        q_lo = (self.thr - inc[und]) - E.v[E.start[par[und]] + r_keep[und] - 1]
        qlo_c = np.full(nb, np.inf)
        qhi_c = np.full(nb, -np.inf)
        np.minimum.at(qlo_c, cinv[und], q_lo - 1e-6)
        np.maximum.at(qhi_c, cinv[und], q_hi + 1e-6)
        below = fw <= qlo_c[cpar]
        keep = ~below & (fw <= qhi_c[cpar])
        base = np.full(nb, -np.inf)
        if below.any():
            bmx = np.full(nb, -np.inf)
            np.maximum.at(bmx, cpar[below], fw[below])
            acc = np.bincount(cpar[below], weights=np.exp(fw[below] - bmx[cpar[below]]), minlength=nb)
            with np.errstate(divide="ignore"):
                base = np.log(acc) + bmx
        kp = np.flatnonzero(keep)
        B = _Groups(cpar[kp], fw[kp], fw[kp], nb, self._check_time)
        B.logpre = np.logaddexp(B.logpre, base[B.g])
        del fw, cpar, below, keep, kp
        # Band queries: one binary search per (entry, transition) in the composite keys
        # g W + (w - qlo_g) of the kept completions; every per-transition constant is folded
        # into one offset so that the query key is ``off[t] - v``.
        qlo0 = np.where(np.isfinite(qlo_c), qlo_c, 0.0)
        span = np.where(np.isfinite(qlo_c), qhi_c - qlo_c, 0.0)
        W = 2.0 ** np.ceil(np.log2(float(span.max(initial=0.0)) + 4.0))
        bkey = B.g * W + (B.v - qlo0[B.g])
        gu = cinv[und]
        off = gu * W - qlo0[gu] + (self.thr - inc[und])
        bstart = B.start[gu]
        inc_u = inc[und]
        base_u = base[gu]
        e0 = E.start[par[und]] + r_take[und]
        cnt = (r_keep - r_take)[und]
        # The whole query count is known here: charge it before the work, not chunk by chunk,
        # so a table beyond the work budget falls back at once (the decision is the same,
        # since the total charged is the same).
        _charge(int(cnt.sum()))
        ends = np.cumsum(cnt)
        logpre = B.logpre if len(B.logpre) else np.zeros(1)
        t0 = 0
        while t0 < len(und):
            self._check_time()
            t1 = int(np.searchsorted(ends, (ends[t0 - 1] if t0 else 0) + _CHUNK, side="right"))
            t1 = max(t1, t0 + 1)
            c_ = cnt[t0:t1]
            tot = int(c_.sum())
            t_idx = t0 + np.repeat(np.arange(t1 - t0), c_)
            e_idx = np.arange(tot) + np.repeat(e0[t0:t1] - (np.cumsum(c_) - c_), c_)
            pos = np.searchsorted(bkey, off[t_idx] - E.v[e_idx], side="right") - 1
            # pos < start of the child's keys: only the base mass (completions below the range)
            lp = np.where(pos >= bstart[t_idx], logpre[np.maximum(pos, 0)], base_u[t_idx])
            vals = E.lm[e_idx] + inc_u[t_idx] + lp
            m = vals.max()
            if np.isfinite(m):
                self.contrib.append(np.array([m + np.log(np.exp(vals - m).sum())]))
            t0 = t1

    def _merge(self, states, v, lm):
        """Merge entries with the same state and (numerically) the same past value."""
        if len(v) == 0:
            return states, v, lm
        keys = _keys(states, self.base)
        vq = np.round(v / _MERGE).astype(np.int64)
        order = np.lexsort((vq, keys))
        k_s, q_s = keys[order], vq[order]
        new = np.r_[True, (k_s[1:] != k_s[:-1]) | (q_s[1:] != q_s[:-1])]
        starts = np.flatnonzero(new)
        lm_s = lm[order]
        gmax = np.maximum.reduceat(lm_s, starts)
        gid = np.cumsum(new) - 1
        summed = np.add.reduceat(np.exp(lm_s - gmax[gid]), starts)
        rep = order[starts]
        return states[rep], v[rep], gmax + np.log(summed)


def fexact_pvalue(table, time_budget: float | None = None, max_work: int | None = None) -> float:
    """Exact Fisher–Freeman–Halton p-value of an r x c table of counts.

    ``table`` must have no empty rows or columns and at least 2 of each.  Raises
    :class:`BudgetExceeded` when ``time_budget`` seconds pass before the end, when the
    network would hold more than ``_MAX_ROWS`` transitions / entries at once (memory cap), or
    when more than ``max_work`` network rows have been materialised in total (a deterministic,
    machine-independent budget).
    """
    deadline = None if time_budget is None else time.perf_counter() + float(time_budget)
    _work.used, _work.limit = 0, (None if max_work is None else int(max_work))
    try:
        net = _Net(np.asarray(table), deadline)
        return net.run()
    finally:
        _work.limit = None
