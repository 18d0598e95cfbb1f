"""The Streamlit app, page by page (AppTest), against the results of a real smoke run."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "app"
HOME = APP / "Leaderboard.py"
PAGES = {name: APP / "views" / f"{name}.py" for name in
         ("1_ImageNet_board", "2_Ablations", "3_Runs", "4_Claims", "5_Methods", "6_Cost_vs_accuracy")}
MEAN_STD = re.compile(r"^\d+\.\d\d ± (\d+\.\d\d|—)$")


@pytest.fixture(scope="module")
def smoke_root(smoke_results):
    """The smoke run's directory, completed with the committed reference tables."""
    directory, board = smoke_results
    shutil.copytree(REPO / "results" / "reference", directory / "results" / "reference", dirs_exist_ok=True)
    return directory, board


@pytest.fixture
def use_root(monkeypatch):
    """Point the app at a directory; app/ on sys.path as under `streamlit run`.

    Streamlit's script runner installs the page as ``sys.modules["__main__"]`` and leaves
    it there; restored afterwards, or later spawned processes would re-run the page."""
    monkeypatch.syspath_prepend(str(APP))
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])

    def point(directory: Path) -> Path:
        monkeypatch.setenv("SSLBENCH_ROOT", str(directory))
        return directory

    return point


@pytest.fixture
def variant(smoke_root, tmp_path):
    """A copy of the smoke run's results/ (without runs/) that a test may change."""
    shutil.copytree(smoke_root[0] / "results", tmp_path / "results")
    return tmp_path


def run(path: Path) -> AppTest:
    at = AppTest.from_file(str(path), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


CELL = re.compile(r"^[★≈▼▽]* ?\d+\.\d( ± \d+\.\d)?( \(\d of \d\))?$")


def test_home_shows_every_row_and_protocol_with_details_in_expanders(smoke_root, use_root):
    directory, board = smoke_root
    use_root(directory)
    at = run(HOME)
    assert at.selectbox(key="suite").value == "smoke" and at.selectbox(key="rank_by").value == "linear"
    table = at.dataframe[0].value
    assert len(table) == len(board) == 5 and set(table["method"]) == set(board["method"])
    assert list(table.columns) == ["rank", "method", "backbone", "precision", "status", "seeds", "kNN k=20",
                                   "kNN k=200", "linear"]
    assert table[["kNN k=20", "kNN k=200", "linear"]].map(lambda s: bool(CELL.match(s))).all().all()
    assert table["rank"].tolist() == sorted(table["rank"].tolist())
    details = at.dataframe[1].value  # published, cost and device, in an expander
    for column in ("rank", "status", "method", "family", "backbone", "seeds", "published IN-1k linear", "gap (pts)",
                   "published source", "images seen", "CPU hours", "GPU hours", "TFLOPs", "peak memory (MB)",
                   "device", "deviation"):
        assert column in details.columns, column
    row = details.set_index("method").loc["simclr"]
    assert row["published IN-1k linear"] == 69.3 and "arXiv 2002.05709" in row["published source"]
    assert "1000 ep" in row["published source"]
    assert details.set_index("method").loc[["random", "supervised"], "family"].eq("baseline").all()
    assert details["gap (pts)"].isna().all()  # Fashion-MNIST vs ImageNet: never comparable
    assert "gap column is empty on purpose" in texts(at, "caption")
    assert "not comparable to the papers" in texts(at, "warning")
    assert (details["CPU hours"].dropna() >= 0).all() and details["GPU hours"].isna().all()
    rows = at.dataframe[2].value  # per-seed provenance, in an expander
    assert set(rows["method"]) == set(board["method"]) and {"seed", "git_rev", "config_hash"} <= set(rows.columns)


def test_home_filters_by_family_from_the_registry(smoke_root, use_root):
    use_root(smoke_root[0])
    at = run(HOME)
    at.multiselect[0].set_value(["baseline"]).run()
    assert set(at.dataframe[0].value["method"]) == {"random", "supervised"}
    assert "2 of 5 rows shown" in texts(at, "caption")
    assert set(at.dataframe[2].value["method"]) == {"random", "supervised"}  # per-seed rows follow the filters


def _row(method, seed, protocol, value, family="end-to-end contrastive", backbone="resnet18", status="complete",
         deviation="", precision="fp32"):
    return {"suite": "tiny", "method": method, "family": family, "backbone": backbone, "seed": seed,
            "protocol": protocol, "metric": "top1" if protocol in ("knn_k20", "linear") else "ap", "value": value,
            "status": status, "deviation": deviation, "images_seen": 1000, "steps": 10, "seconds": 30.0 + seed,
            "flops": 1e12, "peak_mem_mb": 100.0, "device": "cpu", "precision": precision, "git_rev": "abc1234",
            "config_hash": f"{method}{seed}"}


@pytest.fixture
def board_root(tmp_path):
    """A two-seed board written by pipeline.results: baselines, a best method, a tie, a diverged transfer seed, a
    deviation, a row below random and one below pixels only."""
    from pipeline.results import leaderboard, write_leaderboard, write_rows

    linear = {"random": (60, 61), "pixels": (70, 70), "supervised": (90, 90), "simclr": (80, 82), "byol": (80, 80.6),
              "mocov2": (76, 77), "cmc": (65, 66), "dim": (50, 52)}
    families = {"random": "baseline", "pixels": "baseline", "supervised": "baseline", "byol": "self-distillation"}
    rows = []
    for method, values in linear.items():
        backbone = "pixels" if method == "pixels" else "resnet18"
        deviation = "views differ" if method == "cmc" else ""
        for seed, value in enumerate(values):
            family = families.get(method, "end-to-end contrastive")
            rows += [_row(method, seed, p, value + shift, family, backbone, deviation=deviation)
                     for p, shift in (("linear", 0), ("knn_k20", -1))]
            if method != "pixels":
                diverged = method == "mocov2" and seed == 0
                rows.append(_row(method, seed, "det_box_ap", None if diverged else value / 2, family, backbone,
                                 status="diverged" if diverged else "complete", deviation=deviation))
    directory = tmp_path / "results" / "tiny"
    (directory / "rows").mkdir(parents=True)
    frame = pd.DataFrame(rows)
    for method, group in frame.groupby("method"):
        write_rows(directory / "rows" / f"{method}.csv", group.to_dict("records"))
    write_leaderboard(leaderboard(frame), directory)
    shutil.copytree(REPO / "results" / "reference", tmp_path / "results" / "reference")
    return tmp_path


def test_home_marks_best_ties_and_rows_below_the_baselines(board_root, use_root):
    use_root(board_root)
    at = run(HOME)
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["simclr", "linear"] == "★ 81.0 ± 1.4"  # best self-supervised mean (supervised is a baseline)
    assert table.loc["byol", "linear"].startswith("≈ 80.3")  # within one std of the best
    assert table.loc["mocov2", "linear"].startswith("76.5")  # not within one std: no mark
    assert table.loc["dim", "linear"].startswith("▼")  # below random
    assert table.loc["cmc", "linear"].startswith("▽")  # above random, below pixels
    assert not table.loc["random", "linear"].startswith(("▼", "▽"))
    assert table.loc["pixels", "box AP"] == ""  # not measured: empty, never "None"
    assert "below `random`" in texts(at, "caption") and "Self-supervised rows above `random`" in texts(at, "caption")
    assert "Self-supervised rows above `pixels`" in texts(at, "caption")
    assert table.loc["supervised", "rank"] == 1 and table.loc["dim", "rank"] == 8


def test_home_rank_by_selector_reorders_the_board(board_root, use_root):
    use_root(board_root)
    at = run(HOME)
    at.selectbox(key="rank_by").set_value("det_box_ap").run()
    table = at.dataframe[0].value
    assert table["method"].iloc[0] == "supervised" and table["method"].iloc[-1] == "pixels"  # no box AP: last
    assert pd.isna(table["rank"].iloc[-1])
    assert "Per-seed spread: box AP" in [h.value for h in at.subheader]


def test_home_never_shows_a_diverged_seed_as_complete(board_root, use_root):
    use_root(board_root)
    at = run(HOME)
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["mocov2", "status"] == "⚠ seed diverged" and table.loc["mocov2", "box AP"].endswith("(1 of 2)")
    assert table.loc["cmc", "status"] == "⚠ deviation"
    warning = texts(at, "warning")
    assert "`mocov2` (⚠ seed diverged)" in warning and "`cmc` (⚠ deviation)" in warning
    assert "det_box_ap: seed 0 diverged" in texts(at, "markdown")
    per_seed = at.dataframe[2].value.set_index(["method", "seed"])
    assert per_seed.loc[("mocov2", 0), "status"] == "diverged: box AP"
    text = per_seed.select_dtypes(exclude="number")
    assert not text.isna().any().any() and not text.astype(str).isin(["None", "nan"]).any().any()


def test_home_banner_follows_the_filters(board_root, use_root):
    use_root(board_root)
    at = run(HOME)
    at.multiselect[0].set_value(["baseline", "self-distillation"]).run()
    assert "Not a clean run" not in texts(at, "warning")
    assert "2 more among the rows hidden by the filters" in texts(at, "info")
    at.multiselect[0].set_value(["baseline", "end-to-end contrastive"]).run()
    assert "`mocov2`" in texts(at, "warning") and "hidden by the filters" not in texts(at, "warning")


def test_home_header_tooltips_name_each_protocol(board_root, use_root):
    use_root(board_root)
    at = run(HOME)
    config = json.loads(at.dataframe[0].proto.columns)
    assert "top-1" in config["linear"]["help"] and "kNN" in config["kNN k=20"]["help"]
    assert "Box AP" in config["box AP"]["help"] and "top-1" not in config["box AP"]["help"]


def test_home_csv_download_holds_numbers(board_root, use_root, monkeypatch):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        files[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    use_root(board_root)
    run(HOME)
    board = pd.read_csv(io.BytesIO(files["sslbench_tiny_leaderboard.csv"]))
    assert pd.api.types.is_float_dtype(board["linear"]) and pd.api.types.is_float_dtype(board["linear_std"])
    assert board.set_index("method").loc["simclr", "linear"] == 81.0 and board["rank"].iloc[0] == 1
    per_seed = pd.read_csv(io.BytesIO(files["sslbench_tiny_per_seed.csv"]))
    assert pd.api.types.is_float_dtype(per_seed["linear"])


def test_home_shows_precision_and_warns_when_a_board_mixes_them(board_root, use_root):
    path = board_root / "results" / "tiny" / "leaderboard.csv"
    use_root(board_root)
    assert run(HOME).dataframe[0].value["precision"].eq("fp32").all()
    board = pd.read_csv(path)
    board.loc[board["method"] == "byol", "precision"] = "bf16"
    board.to_csv(path, index=False)
    at = run(HOME)
    assert "mixes precisions (bf16, fp32)" in texts(at, "warning")


def test_vit_rows_get_no_resnet_published_number(monkeypatch):
    monkeypatch.syspath_prepend(str(APP))
    import tables

    board = pd.DataFrame({"method": ["dino", "dino"], "backbone": ["resnet18", "vit_tiny"], "n_seeds": [1, 1],
                          "status": ["complete"] * 2, "linear": [60.0, 50.0]})
    paper = pd.read_csv(REPO / "results/reference/paper_results.csv")
    out = tables.leaderboard_table(board, {}, paper, "fashion_mnist").set_index("backbone")
    assert out.loc["resnet18", "published IN-1k linear"] == 75.3
    assert pd.isna(out.loc["vit_tiny", "published IN-1k linear"]) and out.loc["vit_tiny", "published source"] == ""


def test_home_timing_text_comes_from_the_suite_file_and_the_board(board_root, use_root):
    use_root(board_root)
    at = run(HOME)
    text = texts(at, "markdown") + texts(at, "warning")
    assert "a few minutes" not in text
    assert "median of 30 s of pretraining per method and seed" in texts(at, "markdown")


def test_imagenet_board_labels_published_numbers_with_sources(smoke_root, use_root):
    use_root(smoke_root[0])
    at = run(PAGES["1_ImageNet_board"])
    assert "No sslbench results for the `imagenet` suite yet" in texts(at, "info")
    summary, pretrain, transfer, cifar = (d.value for d in at.dataframe)
    paper = pd.read_csv(REPO / "results/reference/paper_results.csv")
    assert len(cifar) == (paper["dataset"] == "cifar10").sum() > 0  # the CIFAR-10 rows have a section
    assert summary.set_index("method").loc["simclr", "backbone (linear)"].startswith("resnet50")
    assert pretrain.set_index("method").loc["simclr", "link"].iloc[0] == "https://arxiv.org/abs/2002.05709"
    assert transfer["link"].str.startswith("https://").all()
    assert set(pretrain["method"]) == set(paper.loc[paper["dataset"] == "imagenet1k", "method"])
    assert set(transfer["dataset"]) == {"voc07+12", "coco2017"}
    for detail in (pretrain, transfer):
        assert detail["source"].str.len().gt(0).all()
        assert {"pretrain_epochs", "batch_size", "value"} <= set(detail.columns)
    row = summary.set_index("method").loc["mocov2"]
    assert row["linear top1"] == 71.1 and "facebookresearch/moco" in row["linear: setting and source"]
    assert not any(c.startswith("sslbench") for c in summary.columns)


def test_imagenet_board_shows_own_runs_beside_published(variant, use_root):
    shutil.copytree(variant / "results" / "smoke", variant / "results" / "imagenet")
    use_root(variant)
    at = run(PAGES["1_ImageNet_board"])
    summary = at.dataframe[0].value.set_index("method")
    assert "sslbench linear" in summary.columns and "gap linear (pts)" in summary.columns
    assert summary.loc["simclr", "sslbench linear"] == pytest.approx(
        pd.read_csv(variant / "results/imagenet/leaderboard.csv").set_index("method").loc["simclr", "linear"])


def test_ablations_say_not_yet_and_still_show_the_papers_curves(smoke_root, use_root):
    use_root(smoke_root[0])
    at = run(PAGES["2_Ablations"])
    assert "sslbench ablation sweeps not yet available" in texts(at, "info")
    assert [h.value for h in at.subheader] == ["Accuracy vs batch size", "Accuracy vs momentum (EMA decay)",
                                               "Accuracy vs queue length", "Accuracy vs temperature"]
    assert len(charts(at)) == 4
    assert "published (ImageNet, ResNet-50) — different scale" in texts(at, "markdown")
    assert "SimCLR (arXiv 2002.05709)" in texts(at, "caption")


def test_ablations_render_sweeps_when_present(variant, use_root):
    sweep = pd.DataFrame([
        {"suite": "smoke", "method": "simclr", "parameter": "temperature", "value": t, "seed": s,
         "knn_k20": 60 + 10 * t + s, "knn_k200": 55.0, "linear": 62 + 10 * t - s, "images_seen": 512,
         "seconds": 1.0, "status": "complete"} for t in (0.1, 0.5) for s in (0, 1)])
    from pipeline.sweep import COLUMNS

    assert set(sweep.columns) == set(COLUMNS)  # the columns `sslbench sweep` writes
    (variant / "results" / "ablations").mkdir()
    sweep.to_csv(variant / "results" / "ablations" / "simclr_temperature.csv", index=False)
    use_root(variant)
    at = run(PAGES["2_Ablations"])
    assert not at.info
    assert "sslbench (smoke; error bars" in texts(at, "markdown")
    temperature = json.loads(charts(at)[3].proto.spec)
    assert temperature["layer"][0]["encoding"]["x"]["title"] == "temperature (as set)"
    assert "No sslbench sweep over batch size yet." in texts(at, "caption")


def test_ablations_plot_every_committed_sweep_with_real_axis_titles(variant, use_root):
    shutil.copytree(REPO / "results" / "ablations", variant / "results" / "ablations")
    use_root(variant)
    at = run(PAGES["2_Ablations"])
    sweeps = sorted(p.stem for p in (REPO / "results" / "ablations").glob("*.csv"))
    listed = texts(at, "caption")
    assert all(f"`{name}`" in listed for name in sweeps), [n for n in sweeps if f"`{n}`" not in listed]
    specs = [json.loads(c.proto.spec) for c in charts(at)]
    titles = [layer["encoding"]["x"]["title"] for spec in specs for layer in spec.get("layer", [spec])]
    assert "setting" not in titles and all(titles)
    colours = {}  # one colour per method on every panel
    for spec in specs:
        for layer in spec.get("layer", [spec]):
            scale = layer["encoding"]["color"]["scale"]
            for method, colour in zip(scale["domain"], scale["range"]):
                assert colours.setdefault(method, colour) == colour, method
    assert len(set(colours.values())) == len(colours)


def test_ablations_note_the_effective_value_after_scaling(variant, use_root):
    shutil.copytree(REPO / "results" / "ablations", variant / "results" / "ablations")
    use_root(variant)
    at = run(PAGES["2_Ablations"])
    captions = texts(at, "caption")
    assert "`mocov2` momentum on `tiny_v1`: 0 → 0, 0.9 → 0" in captions
    assert "same runs in effect" in captions


def test_runs_page_overlays_runs_and_diffs_their_configuration(smoke_root, use_root):
    directory, board = smoke_root
    use_root(directory)
    at = run(PAGES["3_Runs"])
    assert at.selectbox[0].value == "smoke"
    picker = at.multiselect(key="runs")
    assert set(picker.options) == {f"{m} · seed 0" for m in board["method"]} and picker.value == ["simclr · seed 0"]
    picker.set_value(["simclr · seed 0", "byol · seed 0"]).run()
    assert not at.exception
    titles = texts(at, "markdown")
    for curve in ("training loss", "images / s", "collapse: per-channel std", "collapse: effective rank"):
        assert curve in titles
    assert all('"run"' in c.proto.spec for c in charts(at))  # one colour per run on every curve
    side = at.dataframe[0].value
    assert {"simclr · seed 0", "byol · seed 0"} <= set(side.columns) and "status" in set(side["field"])
    diff = at.dataframe[1].value.set_index("key")
    assert diff.loc["method", "simclr · seed 0"] == "simclr" and diff.loc["method", "byol · seed 0"] == "byol"
    assert "settings differ between `simclr · seed 0` and `byol · seed 0`" in texts(at, "caption")
    artefacts = at.dataframe[2].value
    assert "runs/smoke/simclr/seed0/run.json" in set(artefacts["file"]) and set(artefacts["run"]) == set(picker.value)
    picker.set_value(["random · seed 0"]).run()
    assert not at.exception and "never trained" in texts(at, "info")


def test_runs_page_finds_runs_of_a_non_default_backbone(smoke_root, variant, use_root):
    """runs/<suite>/<method>/<backbone>/seed<s> (bench.paths.run_dir for a `backbones:` entry) was missed."""
    from bench.paths import run_dir

    directory, _ = smoke_root
    shutil.copytree(directory / "runs" / "smoke" / "simclr" / "seed0",
                    run_dir("smoke", "simclr", 0, variant / "runs", "vit_tiny"))
    use_root(variant)
    at = run(PAGES["3_Runs"])
    picker = at.multiselect(key="runs")
    assert picker.options == ["simclr (vit_tiny) · seed 0"] and picker.value == ["simclr (vit_tiny) · seed 0"]
    assert "runs/smoke/simclr/vit_tiny/seed0/run.json" in set(at.dataframe[-1].value["file"])


def test_runs_page_says_when_runs_are_absent(variant, use_root):
    use_root(variant)
    at = run(PAGES["3_Runs"])
    assert "Run artefacts not yet available" in texts(at, "info") and "not committed" in texts(at, "info")


def test_claims_page_says_not_yet_then_renders_the_ledger(smoke_root, variant, use_root):
    use_root(smoke_root[0])
    assert "claims ledger not yet available" in texts(run(PAGES["4_Claims"]), "info")
    pd.DataFrame([{"claim": "MoCo: m = 0 fails", "source": "MoCo (arXiv 1911.05722) 4.1",
                   "our_numbers": "m=0: 10.0; m=0.99: 60.0", "verdict": "supported", "rule": "gap > 2 std"}]
                 ).to_csv(variant / "results" / "claims.csv", index=False)
    use_root(variant)
    at = run(PAGES["4_Claims"])
    assert not at.info and at.table[0].value["verdict"].tolist() == ["supported"]
    assert at.metric[0].label == "supported"


def test_claims_page_shows_full_coloured_rows_and_checks_each_verdict_against_its_rule(variant, use_root):
    shutil.copy(REPO / "results" / "claims.csv", variant / "results" / "claims.csv")
    use_root(variant)
    at = run(PAGES["4_Claims"])
    table = at.table[0]
    assert {"claim", "source", "our numbers", "verdict", "rule"} <= set(table.value.columns)
    assert "background-color" in str(table.proto)  # verdicts coloured
    ledger = pd.read_csv(REPO / "results" / "claims.csv").set_index("claim")
    shown = table.value.set_index("claim")
    instdisc = "InstDisc: a larger memory does not hurt"
    # the printed rule, applied to the printed numbers, is what the page reports beside the ledger's verdict
    if ledger.loc[instdisc, "rule"].startswith("reproduced if the claimed arm beats the other by more than 2 std"):
        assert shown.loc[instdisc, "printed rule gives"] == "inconclusive"  # 78.6 ± 0.7 vs 78.9 ± 0.6
        if ledger.loc[instdisc, "verdict"] != "inconclusive":
            assert instdisc in texts(at, "warning")


def test_methods_page_has_one_card_per_registered_method(smoke_root, use_root):
    from methods.registry import get_method, method_names

    use_root(smoke_root[0])
    at = run(PAGES["5_Methods"])
    assert [h.value for h in at.subheader] == method_names()
    body = texts(at, "markdown")
    for name in method_names():
        assert get_method(name).paper in body
    assert "NT-Xent" in body  # SimCLR's mechanism paragraph
    assert "temperature 0.5, the paper's own setting" in body  # SimCLR's deviations paragraph
    defaults = {r["hyper-parameter"]: r["default"] for _, r in at.dataframe[method_names().index("mocov2")]
                .value.iterrows()}
    assert defaults["queue_length"] == "65536" and defaults["optimizer.lr"] == "0.03"


def test_methods_page_searches_renders_docstrings_and_shows_what_ran(smoke_root, use_root):
    import yaml

    use_root(smoke_root[0])
    at = run(PAGES["5_Methods"])
    body = texts(at, "markdown")
    assert not re.search(r":(mod|class|func|meth):`", body)  # Sphinx roles rendered as code
    assert "**Mechanism.** Mechanism" not in body  # DIM's "Mechanism (local DIM):" label is read as a label
    assert r"exp(f\_i.f\_x / T)" in body  # InvaSpread's formula: underscores escaped, not italics
    params = yaml.safe_load((REPO / "params.yaml").read_text())["methods"]
    overridden = next(m for m, o in params.items() if o)
    key, value = next(iter(params[overridden].items()))
    from methods.registry import method_names

    table = at.dataframe[method_names().index(overridden)].value.set_index("hyper-parameter")
    assert table.loc[key, "params.yaml"] == str(value) and table.loc[key, "ran"] == str(value)
    at.text_input(key="search").set_value("momentum encoder").run()
    names = [h.value for h in at.subheader]
    assert "mocov2" in names and "simclr" not in names
    assert f"{len(names)} of {len(method_names())} registered methods" in texts(at, "markdown")


def test_methods_page_shows_the_views_each_method_builds_and_the_suite_s_optimizer(smoke_root, use_root):
    """The card showed ``view_recipe`` ("simclr" for CMC and CPC v2, which override ``views()``) and the code's
    optimizer where the suite's ran."""
    import yaml

    from bench.config import load_suite
    from methods.registry import get_method, method_names

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    suite = load_suite(params["suite"])
    use_root(smoke_root[0])
    at = run(PAGES["5_Methods"])
    trained = [name for name in method_names() if get_method(name).trains]
    views = dict(zip(trained, [str(m.value) for m in at.markdown if str(m.value).startswith("**Views**")], strict=True))
    px = f"{suite.resolution} px"
    for name in ("cmc", "cpc_v2"):  # one crop, no colour jitter (CMC splits L / ab itself; CPC augments patches)
        assert views[name].endswith(f": `1 × [{px}, crop scale 0.2–1, flip 0.5]`"), views[name]
    assert "+ 6 × [" in views["swav"] and "+ 8 × [" in views["dino"]  # multi-crop, as the suite scales it
    assert f"`views({suite.resolution})` on suite `{suite.name}`" in views["simclr"]
    table = at.dataframe[method_names().index("mocov2")].value.set_index("hyper-parameter")
    assert table.loc["optimizer.lr", "default"] == "0.03"
    assert table.loc["optimizer.lr", "ran"] == str(suite.optimizer.lr)  # the suite's optimizer, as run_plan runs


def test_cost_vs_accuracy_draws_one_readable_chart_with_the_ssl_pareto_front(smoke_root, use_root):
    directory, board = smoke_root
    use_root(directory)
    at = run(PAGES["6_Cost_vs_accuracy"])
    assert len(charts(at)) == 1 and "suite `smoke`" in texts(at, "markdown")
    spec = charts(at)[0].proto.spec
    assert "symlog" not in spec and '"log"' not in spec  # linear axes
    key = "Pareto front (self-supervised): "
    front = next(c.value for c in at.caption if key in c.value).split(key)[1].split(". ")[0].split(" → ")
    ssl = board[~board["family"].isin(["baseline", "supervised"])]
    cheapest = ssl.sort_values(["seconds", "linear"], ascending=[True, False]).iloc[0]["method"]
    assert front[0] == cheapest and set(front) <= set(ssl["method"])
    assert "images_seen" not in at.radio[1].options  # the same for every method under a matched budget
    assert "Not an axis: images seen" in texts(at, "caption")
    at.radio[1].set_value("flops").run()
    assert not at.exception and len(charts(at)) == 1 and "TFLOPs" in charts(at)[0].proto.spec


def test_cost_labels_do_not_overlap_and_colours_are_distinct(monkeypatch):
    monkeypatch.syspath_prepend(str(APP))
    import charts

    board = pd.read_csv(REPO / "results" / "tiny" / "leaderboard.csv")
    placed = charts.place_labels(board, "seconds", "linear", "method", width=1000, height=420)
    (x0, x1), (y0, y1) = charts._padded(board["seconds"]), charts._padded(board["linear"])
    boxes = [((x - x0) / (x1 - x0) * 1000, (1 - (y - y0) / (y1 - y0)) * 420 - 6, 6.5 * len(m))
             for x, y, m in zip(placed["label_x"], placed["label_y"], placed["method"])]
    for i, (a, b, w) in enumerate(boxes):
        for c, d, v in boxes[:i]:
            assert not (a < c + v - 0.5 and c < a + w - 0.5 and abs(b - d) < 11.5), placed["method"].iloc[i]
    colours = charts.method_colours(list(board["method"]))
    assert len(set(colours.values())) == len(colours) == len(board)


def test_app_protocol_labels_follow_the_declared_protocols(monkeypatch):
    from pipeline.results import PROTOCOLS

    monkeypatch.syspath_prepend(str(APP))
    import tables

    assert list(tables.PROTOCOL_LABELS) == PROTOCOLS
