"""The input contract, resources: no leaks, and a ParamList owns its arrays.

100,000 calls (accepted and rejected) leave resident memory flat: work
tables, sum buffers and error paths free what they allocate.  A ParamList
holds references to its arrays, which keep them (and the buffers they view)
alive after the list, dict or model that held them is gone, and releases
them when it is deleted.

See docs/contract.md.
"""
import gc
import os
import sys
import weakref

import numpy as np
import pytest

import l2fast
from l2fast.reference import exact_sum_squares

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Weights(np.ndarray):
    """An ndarray subclass: its instances can be weakly referenced."""


def tracked(shape, dtype=np.float64, fill=1.0):
    a = np.full(shape, fill, dtype).view(Weights)
    return a, weakref.ref(a)


# ---------------------------------------------------------------------------
# Resident memory over 100,000 calls
# ---------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_100000_calls_leave_resident_memory_flat():
    rng = np.random.default_rng(0)
    # 24 arrays of assorted layouts: each call builds a table of 24+ pieces.
    ws = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(1, 300, 16)]
    ws += [rng.standard_normal((20, 30))[::2, ::-3] for _ in range(8)]
    src = [np.ones(w.shape) for w in ws]
    pl, pl_src = l2fast.ParamList(ws), l2fast.ParamList(src)
    bad_dtype = ws[:5] + [np.ones(3, np.int32)]
    overlapping = ws[:5] + [ws[2][1:]]

    def calls(k):
        """Ten calls of every kind, accepted and rejected; k keeps values bounded."""
        l2fast.sum_squares(ws)
        l2fast.sum_squares(ws, per_array=True)
        l2fast.scale_(ws, 1.0 + (-1) ** k * 1e-3)
        l2fast.sum_squares_scale_(ws, 1.0, per_array=True)
        l2fast.add_scaled_(ws, src, (-1) ** k * 1e-3)
        pl.sum_squares_scale_(1.0)
        pl.add_scaled_(pl_src, 0.0)
        l2fast.ParamList(ws).sum_squares()
        try:
            l2fast.sum_squares(bad_dtype)
        except TypeError:
            pass
        try:
            l2fast.scale_(overlapping, 2.0, check_finite=True)
        except ValueError:
            pass

    for k in range(2_000):                 # warm up: caches, free lists, arenas
        calls(k)
    gc.collect()
    before = rss_bytes()
    for k in range(10_000):                # 100,000 calls
        calls(k)
    gc.collect()
    grown = rss_bytes() - before
    # A leaked work table (24 pieces, ~1.2 KB) or sum buffer per call would
    # add tens of MB; allow 2 MiB of allocator noise.
    assert grown < 2 * 1024 * 1024, f"resident memory grew by {grown} bytes"
    assert np.isfinite(l2fast.sum_squares(ws))


def test_refcounts_return_to_where_they_were():
    ws = [np.ones(10), np.ones((3, 4), np.float32)]
    src = [np.ones(10), np.ones((3, 4))]
    counts = [sys.getrefcount(w) for w in ws + src]
    for _ in range(1000):
        l2fast.sum_squares(ws)
        l2fast.add_scaled_(ws, src, 0.0)
        try:
            l2fast.scale_([ws[0], ws[0]], 1.0)
        except ValueError:
            pass
    assert [sys.getrefcount(w) for w in ws + src] == counts


# ---------------------------------------------------------------------------
# A ParamList keeps its arrays alive
# ---------------------------------------------------------------------------

def test_paramlist_keeps_its_arrays_alive_and_releases_them():
    a, ref_a = tracked(1000, fill=2.0)
    b, ref_b = tracked((10, 10), np.float32, fill=3.0)
    pl = l2fast.ParamList([a, b])
    del a, b
    gc.collect()
    assert ref_a() is not None and ref_b() is not None
    assert pl.sum_squares() == 1000 * 4.0 + 100 * 9.0
    pl.scale_(0.5)
    assert ref_a().tolist() == [1.0] * 1000
    del pl
    gc.collect()
    assert ref_a() is None and ref_b() is None


def test_paramlist_holds_one_reference_per_array():
    a = np.ones(5)
    n = sys.getrefcount(a)
    pl = l2fast.ParamList([a])
    assert sys.getrefcount(a) == n + 1
    del pl
    assert sys.getrefcount(a) == n


def test_paramlist_paired_with_a_paramlist_src_releases_both():
    d, ref_d = tracked(100, fill=1.0)
    s, ref_s = tracked(100, fill=4.0)
    pl, pl_src = l2fast.ParamList([d]), l2fast.ParamList([s])
    pl.add_scaled_(pl_src, 0.25)       # the pairing is cached in pl
    del d, s, pl_src
    gc.collect()
    assert ref_s() is not None         # kept by the cached pairing
    pl.add_scaled_([np.ones(100)], 1.0)
    assert ref_d().tolist() == [3.0] * 100
    del pl
    gc.collect()
    assert ref_d() is None and ref_s() is None


@pytest.mark.parametrize("owner", ["list", "dict", "model object", "views of a buffer"])
def test_deleting_the_owner_while_a_paramlist_exists_is_safe(owner):
    rng = np.random.default_rng(1)
    values = [rng.standard_normal(50_000), rng.standard_normal((300, 400)).astype(np.float32)]
    expected = exact_sum_squares(values)

    if owner == "list":
        holder = [v.copy() for v in values]
        pl = l2fast.ParamList(holder)
    elif owner == "dict":
        holder = {"w": values[0].copy(), "b": values[1].copy()}
        pl = l2fast.ParamList(holder)
    elif owner == "model object":
        class Model:
            pass
        holder = Model()
        holder.w, holder.b = values[0].copy(), values[1].copy()
        pl = l2fast.ParamList([holder.w, holder.b])
    else:
        buf = np.empty(50_000 + 2 * 300 * 400 * 4 // 8)
        holder = buf
        v0 = buf[:50_000]
        v1 = buf[50_000:].view(np.float32)[: 300 * 400].reshape(300, 400)
        v0[...], v1[...] = values
        pl = l2fast.ParamList([v0, v1])
        del v0, v1, buf
    del holder
    gc.collect()
    # Allocate and fill memory that would reuse freed buffers.
    junk = [np.full(v.shape, 7.0, v.dtype) for v in values for _ in range(4)]
    assert pl.sum_squares(num_threads=2) == pytest.approx(expected, rel=1e-12)
    assert pl.sum_squares_scale_(-1.0, num_threads=2) == pl.sum_squares()
    for arr, v in zip(pl.arrays, values):
        assert np.array_equal(arr, -v)
    del junk


def test_deleting_torch_tensors_while_a_paramlist_exists_is_safe():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ts = [torch.randn(1000, 300), torch.randn(5000, dtype=torch.float64)]
    expected = exact_sum_squares(ts)
    pl = l2fast.ParamList(ts)
    del ts
    gc.collect()
    junk = [torch.full((1000, 300), 7.0) for _ in range(4)]
    assert pl.sum_squares() == pytest.approx(expected, rel=1e-12)
    del junk
