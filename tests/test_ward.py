import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, is_valid_linkage, linkage
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score

from concepts.discovery.clustering import cluster
from concepts.discovery.clustering.ward import cut_tree, ward_linkage
from concepts.discovery.config import ClusteringConfig


@pytest.mark.parametrize("n, d, seed, chunk", [(40, 3, 0, 2048), (700, 16, 1, 64), (2500, 48, 2, 256),
                                               (2500, 48, 3, 2048)])
def test_equals_scipy_ward(n, d, seed, chunk):
    # chunk < n / 2 takes the symmetric first pass and chunked searches; 2048 a single tile
    X = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    Z = ward_linkage(X, block=97, chunk=chunk)
    ref = linkage(X.astype(np.float64), method="ward")
    np.testing.assert_allclose(Z[:, 2], ref[:, 2], rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(Z[:, 3], ref[:, 3])
    for k in (2, 7, min(600, n - 1)):
        labels = cut_tree(Z, k)
        assert len(np.unique(labels)) == k and labels.min() == 0 and labels.max() == k - 1
        assert adjusted_rand_score(labels, fcluster(ref, k, "maxclust")) == 1.0


def test_equals_scipy_on_blobs_with_small_tiles():
    # dense blobs: many merges per round, stale caches and inherited caches on every path
    rng = np.random.default_rng(9)
    centers = rng.normal(scale=4, size=(30, 8))
    X = (centers[rng.integers(0, 30, size=3000)] + rng.normal(size=(3000, 8))).astype(np.float32)
    Z = ward_linkage(X, block=64, chunk=128)
    ref = linkage(X.astype(np.float64), method="ward")
    np.testing.assert_allclose(Z[:, 2], ref[:, 2], rtol=1e-7, atol=1e-9)
    for k in (30, 600):
        assert adjusted_rand_score(cut_tree(Z, k), fcluster(ref, k, "maxclust")) == 1.0


def test_equals_sklearn_agglomerative():
    X = np.random.default_rng(5).normal(size=(900, 24)).astype(np.float32)
    ours = cut_tree(ward_linkage(X), 60)
    sk = AgglomerativeClustering(n_clusters=60, linkage="ward").fit_predict(X)
    assert adjusted_rand_score(ours, sk) == 1.0


def test_planted_clusters_are_recovered():
    rng = np.random.default_rng(3)
    centers = rng.normal(scale=20, size=(6, 10))
    truth = rng.integers(0, 6, size=600)
    X = centers[truth] + rng.normal(size=(600, 10))
    assert adjusted_rand_score(cut_tree(ward_linkage(X), 6), truth) == 1.0


def test_ties_are_deterministic_and_valid():
    rng = np.random.default_rng(4)
    base = rng.integers(0, 3, size=(60, 4)).astype(np.float32)  # many identical rows
    X = np.concatenate([base, base, base[:20]])
    Z1, Z2 = ward_linkage(X, block=16, chunk=32), ward_linkage(X, block=1000)
    np.testing.assert_array_equal(Z1, Z2)
    ref = linkage(X.astype(np.float64), method="ward")
    np.testing.assert_allclose(np.sort(Z1[:, 2]), np.sort(ref[:, 2]), atol=1e-9)
    assert Z1[-1, 3] == len(X) and np.all(np.diff(Z1[:, 2]) >= 0)


@pytest.mark.parametrize("chunk", [2048, 64])
def test_exact_duplicates_merge_first(chunk):
    # identical rows (repeated sentences give identical vectors) tie at cost 0; they are merged
    # first and the rest runs as weighted Ward, also through the weighted first pass (chunk 64)
    rng = np.random.default_rng(10)
    base = rng.normal(size=(500, 6)).astype(np.float32)
    X = np.concatenate([base, base[:100], base[:20], base[:20]])[rng.permutation(640)]
    Z = ward_linkage(X, block=32, chunk=chunk)
    ref = linkage(X.astype(np.float64), method="ward")
    assert is_valid_linkage(Z) and Z[-1, 3] == len(X)
    np.testing.assert_allclose(Z[:, 2], ref[:, 2], rtol=1e-7, atol=1e-9)
    for k in (10, 100):
        assert adjusted_rand_score(cut_tree(Z, k), fcluster(ref, k, "maxclust")) == 1.0
    # 500 clusters = exactly the distinct rows: all 140 zero-height merges and nothing else
    distinct = np.unique(X, axis=0, return_inverse=True)[1].ravel()
    assert adjusted_rand_score(cut_tree(Z, 500), distinct) == 1.0
    all_same = ward_linkage(np.ones((5, 3)))
    np.testing.assert_array_equal(all_same[:, 2], 0.0)
    assert is_valid_linkage(all_same) and all_same[-1, 3] == 5


def test_weighted_points_equal_repeated_points():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(80, 5))
    w = rng.integers(1, 5, size=80)
    Zr = linkage(np.repeat(X, w, axis=0), method="ward")
    for chunk in (2048, 8):  # one tile; tiles of 8 columns with mixed sizes per query block
        Zw = ward_linkage(X, sizes=w, block=16, chunk=chunk)
        # the repeated copies merge first at height 0; the rest is the weighted tree
        np.testing.assert_allclose(Zw[:, 2], Zr[-(len(X) - 1):, 2], rtol=1e-7)
        np.testing.assert_array_equal(Zw[:, 3], Zr[-(len(X) - 1):, 3])


def test_cut_errors_and_bad_input():
    Z = ward_linkage(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(ValueError, match="cannot cut 10 points into 11"):
        cut_tree(Z, 11)
    with pytest.raises(ValueError, match="NaN"):
        ward_linkage(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="K=50 clusters from 10 points"):
        cluster(np.zeros((10, 2)), 50, ClusteringConfig())


@pytest.mark.parametrize("method", ["kmeans_ward", "kmeans", "scipy_ward"])
def test_other_methods_find_planted_clusters(method):
    rng = np.random.default_rng(8)
    centers = rng.normal(scale=30, size=(5, 8))
    truth = rng.integers(0, 5, size=400)
    X = (centers[truth] + rng.normal(size=(400, 8))).astype(np.float32)
    res = cluster(X, 5, ClusteringConfig(method=method, micro_clusters=50))
    assert adjusted_rand_score(res.labels, truth) == 1.0
    if method != "kmeans":
        assert len(np.unique(res.cut(3))) == 3
