"""Boundaries: InterFaceGAN's split, the svc and batched jax solvers, projection, files and the CLI."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ifgan_jax import boundary as B
from ifgan_jax.cli import main as cli_main
from ifgan_jax.errors import InputError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PUBLISHED = FIXTURES / "boundaries"
# Small jax fits share one shape (2000 codes, 16 dims, 200 chosen per class) so they compile once or twice.
CHOSEN = 200


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def synthetic(n: int, d: int, k: int, noise: float | list[float], seed: int = 0):
    """Codes (n, d) ~ N(0, 1), k score columns = a random unit direction each + Gaussian noise."""
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((n, d), dtype=np.float32)
    dirs = rng.standard_normal((d, k))
    dirs /= np.linalg.norm(dirs, axis=0)
    scores = codes @ dirs + np.asarray(noise) * rng.standard_normal((n, k))
    return codes, scores.astype(np.float32), dirs.T




@contextlib.contextmanager
def np_int_alias():
    # InterFaceGAN uses np.int (removed in numpy 1.24): alias it only while the reference runs.
    had = "int" in np.__dict__
    if not had:
        np.int = int
    try:
        yield
    finally:
        if not had:
            del np.int


def quiet_logger() -> logging.Logger:
    logger = logging.getLogger("test_boundary_reference")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    return logger


# -- split ---------------------------------------------------------------------------------------------------


def test_split_counts_and_membership():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal(1000)
    sp = B.split_by_score(None, scores, 0.02, 0.7, seed=3)
    assert (sp.chosen_num, sp.train_num, sp.val_num) == (20, 14, 6)
    assert sp.counts() == {"total": 1000, "valid": 1000, "chosen_per_class": 20, "train": 28, "val": 12,
                           "remaining": 960, "invalid": 0, "nonfinite": 0}
    order = np.argsort(scores)[::-1]
    top, bottom = set(order[:20]), set(order[-20:])
    pos = list(sp.train_idx[:14]) + list(sp.val_idx[:6])
    neg = list(sp.train_idx[14:]) + list(sp.val_idx[6:])
    assert set(pos) == top and set(neg) == bottom
    assert list(sp.train_labels) == [1] * 14 + [0] * 14 and list(sp.val_labels) == [1] * 6 + [0] * 6
    assert set(sp.remaining_idx) == set(order[20:-20])
    # Remaining rows are labelled by the midpoint of the highest and lowest score.
    mid = (scores.max() + scores.min()) / 2
    np.testing.assert_array_equal(sp.remaining_labels, (scores[sp.remaining_idx] >= mid).astype(int))
    # Seeded: same seed same shuffle, another seed another one.
    assert np.array_equal(B.split_by_score(None, scores, seed=3).train_idx, sp.train_idx)
    assert not np.array_equal(B.split_by_score(None, scores, seed=4).train_idx, sp.train_idx)


@pytest.mark.parametrize(("ratio", "n", "chosen"), [
    (0.02, 1000, 20), (1.0, 1000, 500), (0.5, 999, 499), (800, 1000, 500), (37, 1000, 37), (3.7, 1000, 3),
])
def test_split_chosen_num_capping(ratio, n, chosen):
    sp = B.split_by_score(None, np.arange(n, dtype=np.float64), ratio, 0.7)
    assert sp.chosen_num == chosen
    assert sp.remaining_idx.size == n - 2 * chosen
    assert sp.train_num == int(chosen * 0.7)


def test_split_drops_invalid_and_nonfinite():
    rng = np.random.default_rng(2)
    scores = rng.standard_normal(500)
    scores[[3, 50, 400]] = -1.0
    scores[[7, 8]] = np.nan
    scores[9] = np.inf
    scores[10] = -np.inf
    sp = B.split_by_score(None, scores, 0.1, 0.5, invalid_value=-1.0)
    counts = sp.counts()
    assert counts["invalid"] == 3 and counts["nonfinite"] == 4 and counts["valid"] == 493
    assert sp.chosen_num == 49
    used = np.concatenate([sp.train_idx, sp.val_idx, sp.remaining_idx])
    assert used.size == 493 and np.unique(used).size == 493
    assert not set(used) & {3, 50, 400, 7, 8, 9, 10}
    # Without invalid_value the -1 rows are ordinary scores; NaN/inf are still dropped.
    sp2 = B.split_by_score(None, scores, 0.1, 0.5)
    assert sp2.counts()["invalid"] == 0 and sp2.counts()["nonfinite"] == 4


def test_split_errors_name_the_problem():
    with pytest.raises(InputError, match="too few valid samples"):
        B.split_by_score(None, np.full(100, np.nan))
    with pytest.raises(InputError, match="too few valid samples"):
        B.split_by_score(None, np.arange(40.0))  # 0.02 * 40 rounds down to 0 per class
    with pytest.raises(InputError, match="zero variance"):
        B.split_by_score(None, np.ones(1000))
    with pytest.raises(InputError, match="N=10 rows but scores have N=9"):
        B.split_by_score(np.zeros((10, 3)), np.arange(9.0))
    with pytest.raises(InputError, match="chosen_num_or_ratio"):
        B.split_by_score(None, np.arange(100.0), chosen_num_or_ratio=0)
    with pytest.raises(InputError, match="split_ratio"):
        B.split_by_score(None, np.arange(100.0), split_ratio=1.5)
    with pytest.raises(InputError, match="seed"):
        B.split_by_score(None, np.arange(100.0), seed=-1)
    assert issubclass(InputError, ValueError)


def test_split_matches_interfacegan_rows_and_order(manipulator, monkeypatch):
    """The rows (and their order) InterFaceGAN feeds to its SVM after np.random.seed(s) are ours for seed=s."""
    codes, scores, _ = synthetic(3000, 8, 1, 0.5, seed=5)
    scores[::97, 0] = -2.0  # some invalid rows
    captured = {}

    class FakeSVC:
        def __init__(self, **kwargs):
            captured["kwargs"] = kwargs

        def fit(self, x, y):
            captured["x"], captured["y"] = x.copy(), y.copy()
            self.coef_ = np.ones((1, x.shape[1]))
            return self

        def predict(self, x):
            return np.zeros(len(x), dtype=int)

    monkeypatch.setattr(manipulator.svm, "SVC", FakeSVC)
    np.random.seed(11)
    with np_int_alias():
        manipulator.train_boundary(codes, scores, chosen_num_or_ratio=0.05, split_ratio=0.6, invalid_value=-2.0,
                                   logger=quiet_logger())
    sp = B.split_by_score(codes, scores, 0.05, 0.6, invalid_value=-2.0, seed=11)
    assert captured["kwargs"] == {"kernel": "linear"}
    np.testing.assert_array_equal(captured["x"], codes[sp.train_idx])
    np.testing.assert_array_equal(captured["y"], sp.train_labels)


# -- solvers -------------------------------------------------------------------------------------------------


def test_svc_matches_sklearn_on_the_same_split():
    from sklearn import svm

    codes, scores, dirs = synthetic(4000, 32, 1, 0.4, seed=2)
    res = B.train_boundary(codes, scores[:, 0], chosen_num_or_ratio=0.1, solver="svc", seed=1)
    sp = B.split_by_score(None, scores[:, 0], 0.1, 0.7, seed=1)
    clf = svm.SVC(kernel="linear", C=1.0).fit(codes[sp.train_idx], sp.train_labels)
    assert cosine(res.boundary, clf.coef_) >= 0.9999
    assert res.boundary.shape == (1, 32) and res.boundary.dtype == np.float32
    assert abs(np.linalg.norm(res.boundary) - 1) < 1e-6
    assert cosine(res.boundary, dirs[0]) > 0.9  # points toward high scores
    val = (clf.predict(codes[sp.val_idx]) == sp.val_labels).mean()
    assert res.report["accuracy"]["val"] == pytest.approx(val)
    np.testing.assert_array_equal(res.split.train_idx, sp.train_idx)


def test_svc_and_jax_match_interfacegan(manipulator):
    codes, scores, _ = synthetic(2000, 16, 1, 0.4, seed=3)
    np.random.seed(0)
    with np_int_alias():
        ref = manipulator.train_boundary(codes, scores, chosen_num_or_ratio=CHOSEN, logger=quiet_logger())
    svc = B.train_boundary(codes, scores, chosen_num_or_ratio=CHOSEN, solver="svc", seed=0)
    jx = B.train_boundary(codes, scores, chosen_num_or_ratio=CHOSEN, solver="jax", seed=0)
    assert ref.shape == svc.boundary.shape == jx.boundary.shape == (1, 16)
    assert cosine(svc.boundary, ref) >= 0.9999
    assert cosine(jx.boundary, ref) >= 0.99


@pytest.mark.parametrize(("dim", "noise"), [(64, [0.2, 0.5, 1.0, 1.5]), (512, [0.2, 0.4, 0.7, 1.0])])
def test_jax_matches_svc_on_every_attribute(dim, noise):
    """All attributes in one batched program; each within cosine 0.99 and 0.5 val points of sklearn's SVC."""
    codes, scores, dirs = synthetic(4000, dim, 4, noise, seed=dim)
    jx = B.train_boundaries(codes, scores, chosen_num_or_ratio=0.25, solver="jax", seed=0)
    svc = B.train_boundaries(codes, scores, chosen_num_or_ratio=0.25, solver="svc", seed=0)
    assert jx.boundaries.shape == (4, dim) and jx.boundaries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(jx.boundaries, axis=1), 1.0, atol=1e-6)
    for k in range(4):
        cos = cosine(jx.boundaries[k], svc.boundaries[k])
        assert cos >= 0.99, (k, cos)
        val_j, val_s = jx.reports[k]["accuracy"]["val"], svc.reports[k]["accuracy"]["val"]
        assert abs(val_j - val_s) <= 0.005, (k, val_j, val_s)
        assert jx.reports[k]["solver_info"]["converged"]
        assert cosine(jx.boundaries[k], dirs[k]) > 0.5  # toward high scores
        assert jx.reports[k]["counts"] == svc.reports[k]["counts"]


def test_jax_intercept_when_regularisation_dominates():
    """Tiny codes: every chosen row sits inside the margin, the hinge is flat in b, libsvm takes the midpoint."""
    codes, scores, _ = synthetic(4000, 64, 4, [0.2, 0.5, 1.0, 1.5], seed=64)
    codes *= 0.01
    jx = B.train_boundaries(codes, scores, chosen_num_or_ratio=0.25, solver="jax")
    svc = B.train_boundaries(codes, scores, chosen_num_or_ratio=0.25, solver="svc")
    for k in range(4):
        assert cosine(jx.boundaries[k], svc.boundaries[k]) >= 0.9999
        assert jx.intercepts[k] == pytest.approx(svc.intercepts[k], abs=1e-4)
        assert jx.reports[k]["accuracy"] == pytest.approx(svc.reports[k]["accuracy"], abs=0.005)


def test_wplus_codes_are_flattened():
    codes, scores, _ = synthetic(2000, 16, 1, 0.3, seed=7)
    wplus = codes.reshape(2000, 2, 8)
    flat = B.train_boundary(codes, scores, chosen_num_or_ratio=CHOSEN, solver="jax")
    res = B.train_boundary(wplus, scores, chosen_num_or_ratio=CHOSEN, solver="jax")
    assert res.boundary.shape == (1, 16)
    np.testing.assert_allclose(res.boundary, flat.boundary, atol=1e-6)


def test_train_boundaries_reports_and_invalid_rows():
    codes, scores, _ = synthetic(2000, 16, 1, 0.3, seed=8)
    scores[:5, 0] = np.nan
    res = B.train_boundaries(codes, scores, chosen_num_or_ratio=CHOSEN, solver="jax", seed=2)
    rep = res.reports[0]
    assert rep["counts"]["nonfinite"] == 5 and rep["counts"]["valid"] == 1995
    assert rep["counts"]["train"] == 2 * int(CHOSEN * 0.7) and rep["solver"] == "jax" and rep["seed"] == 2
    assert rep["counts"]["remaining"] == 1995 - 2 * CHOSEN
    assert set(rep["accuracy"]) == {"train", "val", "remaining"}
    assert rep["accuracy"]["val"] >= 0.95
    json.dumps(rep)  # reports are plain JSON


def test_train_boundaries_input_errors():
    codes, scores, _ = synthetic(500, 4, 2, 0.3)
    with pytest.raises(InputError, match="N=500 rows but scores have N=499"):
        B.train_boundaries(codes, scores[:-1])
    bad = codes.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="non-finite values in 1 rows"):
        B.train_boundaries(bad, scores)
    allnan = scores.copy()
    allnan[:, 1] = np.nan
    with pytest.raises(InputError, match=r"attribute 'b' \(column 1\): too few valid samples"):
        B.train_boundaries(codes, allnan, names=["a", "b"])
    with pytest.raises(InputError, match="shape"):
        B.train_boundaries(codes[:, :, None, None], scores)
    with pytest.raises(InputError, match="solver"):
        B.train_boundaries(codes, scores, solver="liblinear")
    with pytest.raises(InputError, match="use train_boundaries"):
        B.train_boundary(codes, scores)


# -- projection ----------------------------------------------------------------------------------------------


def published_conditionals() -> list[tuple[str, str, list[str]]]:
    """(file, primal, conditions) for every `MODEL_ATTR_c_COND[_COND]_boundary.npy` fixture."""
    out = []
    for path in sorted(PUBLISHED.glob("*_c_*_boundary.npy")):
        stem = path.name[: -len("_boundary.npy")]
        head, conds = stem.split("_c_")
        model = "_".join(head.split("_")[:2])  # e.g. pggan_celebahq, stylegan_ffhq
        attr = head[len(model) + 1 :]
        out.append((path.name, f"{model}_{attr}_boundary.npy", [f"{model}_{c}_boundary.npy" for c in conds.split("_")]))
    return out


def test_published_conditionals_parse():
    cases = published_conditionals()
    assert len(cases) == 13
    assert ("pggan_celebahq_age_c_gender_eyeglasses_boundary.npy", "pggan_celebahq_age_boundary.npy",
            ["pggan_celebahq_gender_boundary.npy", "pggan_celebahq_eyeglasses_boundary.npy"]) in cases
    for _, primal, conds in cases:
        assert "_w_" not in primal and all((PUBLISHED / f).is_file() for f in [primal, *conds])


@pytest.mark.parametrize(("name", "primal", "conds"), published_conditionals())
def test_published_conditionals_reproduced(name, primal, conds):
    want = np.load(PUBLISHED / name)
    got = B.project_boundary(np.load(PUBLISHED / primal), *[np.load(PUBLISHED / c) for c in conds])
    assert got.shape == want.shape == (1, 512)
    assert np.abs(got - want).max() < 1e-8


def test_projection_matches_interfacegan_closed_forms(manipulator):
    rng = np.random.default_rng(4)
    vecs = rng.standard_normal((4, 64))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    p, c1, c2, c3 = (v[None] for v in vecs)
    assert np.abs(B.project_boundary(p, c1) - manipulator.project_boundary(p, c1)).max() < 1e-12
    # Its 2-condition formula adds 1e-8 to a denominator: equal to ~1e-9, not to rounding.
    assert np.abs(B.project_boundary(p, c1, c2) - manipulator.project_boundary(p, c1, c2)).max() < 1e-7
    assert np.abs(B.project_boundary(p, c1, c2, c3) - manipulator.project_boundary(p, c1, c2, c3)).max() < 1e-12


def test_projection_general_and_errors():
    rng = np.random.default_rng(5)
    p = rng.standard_normal(32)
    conds = [3.0 * rng.standard_normal((1, 32)) for _ in range(5)]  # not unit norm
    out = B.project_boundary(p, *conds)
    assert out.shape == (1, 32) and abs(np.linalg.norm(out) - 1) < 1e-12
    assert max(abs(cosine(out, c)) for c in conds) < 1e-12
    assert cosine(B.project_boundary(p), p) == pytest.approx(1.0)
    with pytest.raises(InputError, match="all zeros"):
        B.project_boundary(np.zeros(32), conds[0])
    with pytest.raises(InputError, match="linearly dependent"):
        B.project_boundary(p, conds[0], 2 * conds[0])
    with pytest.raises(InputError, match="span of the conditions"):
        B.project_boundary(conds[0] + conds[1], conds[0], conds[1])
    with pytest.raises(InputError, match="dim 31"):
        B.project_boundary(p, conds[0][:, :31])
    with pytest.raises(InputError, match=r"\(1, d\) or \(d,\)"):
        B.project_boundary(np.ones((2, 32)), conds[0])


# -- files ---------------------------------------------------------------------------------------------------


def test_save_and_load_boundary(tmp_path):
    b = np.random.default_rng(6).standard_normal(20)
    path = B.save_boundary(tmp_path / "b.npy", b)
    raw = np.load(path)  # what InterFaceGAN's edit.py reads
    assert raw.shape == (1, 20) and raw.dtype == np.float32
    np.testing.assert_array_equal(B.load_boundary(path), raw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy"]  # no temp files left
    np.save(tmp_path / "flat.npy", b)
    assert B.load_boundary(tmp_path / "flat.npy").shape == (1, 20)
    for name, arr, msg in [("two.npy", np.ones((2, 20)), "shape"), ("nan.npy", np.full(20, np.nan), "non-finite"),
                           ("zero.npy", np.zeros((1, 20)), "all zeros")]:
        np.save(tmp_path / name, arr)
        with pytest.raises(InputError, match=msg):
            B.load_boundary(tmp_path / name)
    with pytest.raises(InputError, match="does not exist"):
        B.load_boundary(tmp_path / "missing.npy")
    with pytest.raises(InputError, match="does not exist"):
        B.save_boundary(tmp_path / "no" / "b.npy", b)


# -- CLI -----------------------------------------------------------------------------------------------------


def write_inputs(folder: Path, k: int = 2, names: list[str] | None = None) -> tuple[Path, Path]:
    codes, scores, _ = synthetic(2000, 16, k, 0.3, seed=10)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "codes.npy", codes)
    np.save(folder / "scores.npy", scores if k > 1 else scores[:, 0])
    if names:
        (folder / "attributes.json").write_text(json.dumps(names))
    return folder / "codes.npy", folder / "scores.npy"


def test_cli_train_boundary_multi_attribute(tmp_path, capsys):
    codes, scores = write_inputs(tmp_path / "in", 2, ["smile", "age"])
    scores_arr = np.load(scores)
    scores_arr[:3, 1] = np.nan
    np.save(scores, scores_arr)
    out = tmp_path / "out"
    rc = cli_main(["train-boundary", "-c", str(codes), "-s", str(scores), "-o", str(out),
                   "--chosen-num-or-ratio", str(CHOSEN), "--solver", "jax", "--seed", "3"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["age_boundary.npy", "report.json", "smile_boundary.npy"]
    report = json.loads((out / "report.json").read_text())
    assert report["solver"] == "jax" and report["seed"] == 3 and report["timing"]["train_s"] > 0
    assert report["attributes"]["age"]["counts"]["nonfinite"] == 3
    assert report["attributes"]["smile"]["accuracy"]["val"] >= 0.95
    b = np.load(out / "smile_boundary.npy")
    assert b.shape == (1, 16) and b.dtype == np.float32
    assert "smile: train" in capsys.readouterr().out


def test_cli_train_boundary_single_and_names(tmp_path):
    codes, scores = write_inputs(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert cli_main(["train-boundary", "-c", str(codes), "-s", str(scores), "-o", str(out),
                     "--chosen-num-or-ratio", "0.1", "--solver", "svc", "--attribute", "smile"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["boundary.npy", "report.json"]
    assert list(json.loads((out / "report.json").read_text())["attributes"]) == ["smile"]


@pytest.mark.parametrize("case", ["n_mismatch", "all_nan", "names", "nan_codes", "missing", "json"])
def test_cli_train_boundary_bad_input_writes_nothing(tmp_path, capsys, case):
    codes, scores = write_inputs(tmp_path / "in", 2)
    args = ["train-boundary", "-c", str(codes), "-s", str(scores), "-o", str(tmp_path / "out"), "--solver", "svc"]
    if case == "n_mismatch":
        np.save(scores, np.load(scores)[:-1])
    elif case == "all_nan":
        s = np.load(scores)
        s[:, 0] = np.nan
        np.save(scores, s)
    elif case == "names":
        args += ["--attribute", "only_one"]
    elif case == "nan_codes":
        c = np.load(codes)
        c[0, 0] = np.inf
        np.save(codes, c)
    elif case == "missing":
        args[2] = str(tmp_path / "nope.npy")
    elif case == "json":
        (tmp_path / "in" / "attributes.json").write_text('["a", "b", "c"]')
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ifgan train-boundary: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_cli_project(tmp_path, capsys):
    name, primal, conds = published_conditionals()[2]  # a two-condition file
    out = tmp_path / "proj.npy"
    rc = cli_main(["project", "-p", str(PUBLISHED / primal), "-c", *[str(PUBLISHED / c) for c in conds],
                   "-o", str(out)])
    assert rc == 0
    got, want = np.load(out), np.load(PUBLISHED / name)
    assert got.dtype == np.float64 and np.abs(got - want).max() < 1e-8
    assert cli_main(["project", "-p", str(PUBLISHED / primal), "-c", str(PUBLISHED / primal),
                     "-o", str(tmp_path / "bad.npy")]) == 2
    assert "span of the conditions" in capsys.readouterr().err
    assert not (tmp_path / "bad.npy").exists()


def test_cli_subprocess_end_to_end(tmp_path):
    from conftest import run_cli

    codes, scores = write_inputs(tmp_path / "in", 2, ["a", "b"])
    out = tmp_path / "out"
    done = run_cli("train-boundary", "-c", str(codes), "-s", str(scores), "-o", str(out), "--solver", "svc",
                   "--chosen-num-or-ratio", "0.1")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a_boundary.npy", "b_boundary.npy", "report.json"]
    assert "wrote 2 boundaries" in done.stdout
