"""Bad input: configs (property-based), code-carrying pickles, unsafe suite names, foreign result files.

Each bad input must be refused with exit code 2 and exactly one line ``sslbench: error: ...``
naming it — never a traceback — and must not write anything. The CLI runs in-process
(``pipeline.cli.main``) with the stages' data loading replaced by a tripwire, so an input
that slips through fails the test (exit 1) instead of starting a training run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import tempfile
import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pipeline.stages
from bench.config import SUITE_NAME, Params, Suite, suite_names
from bench.data import Dataset, Split
from bench.errors import SSLBenchError
from bench.io import safe_torch_load
from methods.registry import get_method, method_names
from tests.test_faults import assert_one_clean_error, make_project, run_cli

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
VALID_SUITE = {"name": "hyp", "resolution": 16, "budget": {"unit": "images_seen", "value": 64},
               "backbone": {"name": "resnet18", "width": 4, "small_stem": True}, "seeds": [0]}
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)
KEY = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
COMMANDS = ["prepare", "pretrain", "evaluate", "leaderboard", "show"]
WITH_METHOD = {"pretrain", "evaluate", "leaderboard"}


@pytest.fixture
def tripwire(monkeypatch):
    """Any input that gets past validation to training, evaluation or a raw dataset read is a bug
    here: fail loudly (exit 1). A prepared dataset is handed out as a dummy (stages may load it
    before they resolve hyper-parameters)."""

    def reached(*args, **kwargs):
        raise AssertionError("a bad input got past validation")

    split = Split(torch.zeros(8, 1, 16, 16, dtype=torch.uint8), torch.arange(8) % 2)
    monkeypatch.setattr(pipeline.stages, "dataset_for", lambda suite: Dataset("dummy", split, split, 2, (0.5,),
                                                                            (0.25,), "dummy"))
    for name in ("load_raw", "train", "evaluate_run", "build_leaderboard"):
        monkeypatch.setattr(pipeline.stages, name, reached)


@contextlib.contextmanager
def fresh_project():
    """A new empty project directory (cwd) inside an outer directory we can watch."""
    with tempfile.TemporaryDirectory() as outer:
        project = Path(outer) / "a" / "b" / "project"
        project.mkdir(parents=True)
        with contextlib.chdir(project):
            yield Path(outer), project


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def refuse(capsys, argv: list[str], *needles: str, outer: Path, written: set[str]) -> str:
    """Run the CLI; assert one clean sentence, exit 2, nothing written anywhere under ``outer``."""
    code, out, err = run_cli(capsys, *argv)
    line = assert_one_clean_error(code, err, 2, *needles)
    assert out == "", out
    assert tree(outer) == written, tree(outer) - written
    return line


# ----------------------------------------------------------------- schema introspection

@dataclasses.dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]
    type: typing.Any
    meta: dict


def leaves(cls, prefix: tuple[str, ...] = ()) -> list[Leaf]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.append(Leaf((*prefix, f.name), "section", {}))
            out += leaves(tp, (*prefix, f.name))
        else:
            out.append(Leaf((*prefix, f.name), tp, dict(f.metadata)))
    return out


def sections(cls, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], set[str]]]:
    """(path, valid keys) of every mapping in the schema, the top level included."""
    hints = typing.get_type_hints(cls)
    out = [(prefix, {f.name for f in dataclasses.fields(cls)})]
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += sections(hints[f.name], (*prefix, f.name))
    return out


NON_INTEGER_FLOAT = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9).filter(
    lambda x: not x.is_integer())
SCALAR_JUNK = st.one_of(TEXT, st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(KEY, st.integers(), max_size=2))


def wrong_type(tp) -> st.SearchStrategy:
    """Values of a type that field type ``tp`` refuses (None only where the field is not optional)."""
    if tp == "section":
        return st.one_of(st.integers(), TEXT, st.lists(st.integers(), min_size=1, max_size=3), st.booleans())
    if tp is int:
        return st.one_of(NON_INTEGER_FLOAT, SCALAR_JUNK, st.booleans(), st.none())
    if tp is float:
        return st.one_of(SCALAR_JUNK, st.booleans(), st.none())
    if tp is bool:
        return st.one_of(st.integers(), TEXT, st.floats(allow_nan=False), st.none())
    if tp is str:
        return st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                         st.lists(TEXT, max_size=2), st.none())
    if tp == (str | None):
        return st.one_of(st.integers(), st.booleans(), st.lists(TEXT, min_size=1, max_size=2))
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        bad_item = wrong_type(item).filter(lambda v: v is not None or item is not str)
        return st.one_of(st.integers(), TEXT, st.lists(bad_item, min_size=1, max_size=3))
    raise AssertionError(f"no wrong-type strategy for {tp}")


def bad_number(leaf: Leaf) -> st.SearchStrategy:
    tp = leaf.type if typing.get_origin(leaf.type) is not list else typing.get_args(leaf.type)[0]
    if leaf.meta.get("positive"):
        value = st.integers(-10**12, 0) if tp is int else st.floats(max_value=0.0, min_value=-1e300)
    else:
        value = st.integers(-10**12, -1) if tp is int else st.floats(max_value=-1e-9, min_value=-1e300)
    if "at_most" in leaf.meta:
        value = st.one_of(value, st.floats(min_value=leaf.meta["at_most"] + 1e-6, max_value=1e300))
    return st.lists(value, min_size=1, max_size=2) if typing.get_origin(leaf.type) is list else value


def not_a_choice(choices) -> st.SearchStrategy:
    return TEXT.filter(lambda s: s not in choices)


def set_path(data: dict, path: tuple[str, ...], value) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return data


@st.composite
def bad_config(draw, cls, base: dict, skip: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """A config with exactly one fault, and the words its error sentence must contain."""
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "bad_number", "bad_choice", "bad_protocol"]))
    event(kind)
    fields = [leaf for leaf in leaves(cls) if leaf.path[-1] not in skip and leaf.path != ("eval", "protocols")]
    if kind == "unknown_key":
        path, valid = draw(st.sampled_from(sections(cls)))
        key = draw(KEY.filter(lambda k: k not in valid))
        return set_path(base, (*path, key), draw(st.integers(0, 9))), [f"unknown key '{key}'"]
    if kind == "bad_number":
        leaf = draw(st.sampled_from([f for f in fields if {"positive", "nonnegative"} & set(f.meta)]))
        return set_path(base, leaf.path, draw(bad_number(leaf))), [".".join(leaf.path)]
    if kind == "bad_choice" or (kind == "bad_protocol" and cls is not Suite):
        leaf = draw(st.sampled_from([f for f in fields if "choices" in f.meta]))
        return set_path(base, leaf.path, draw(not_a_choice(leaf.meta["choices"]))), [".".join(leaf.path),
                                                                                      "valid choices"]
    if kind == "bad_protocol":
        protocols = draw(st.lists(not_a_choice(("knn", "linear")), min_size=1, max_size=2))
        return set_path(base, ("eval", "protocols"), ["knn", *protocols]), ["protocol", "knn, linear"]
    leaf = draw(st.sampled_from(fields))
    return set_path(base, leaf.path, draw(wrong_type(leaf.type))), [leaf.path[-1]]


# ----------------------------------------------------------------------------- configs

@SETTINGS
@given(case=bad_config(Suite, VALID_SUITE), command=st.sampled_from(COMMANDS))
def test_a_suite_with_one_fault_is_refused_in_one_sentence(capsys, tripwire, case, command):
    data, needles = case
    with fresh_project() as (outer, project):
        (project / "suite.yaml").write_text(yaml.safe_dump(data))
        argv = [command, "--suite", "suite.yaml"] + (["--method", "simclr"] if command in WITH_METHOD else [])
        refuse(capsys, argv, *needles, outer=outer, written=tree(outer))


FOUNDATION = ["byol", "mocov2", "random", "simclr", "supervised"]  # the default pipeline's methods


@settings(SETTINGS, max_examples=50)
@given(data=st.data(), method=st.sampled_from(FOUNDATION))
def test_params_with_one_faulty_override_are_refused(capsys, tripwire, data, method):
    hparams = get_method(method).Hparams
    overrides, needles = data.draw(bad_config(hparams, {}))
    with fresh_project() as (outer, project):
        (project / "suite.yaml").write_text(yaml.safe_dump(VALID_SUITE))
        (project / "params.yaml").write_text(yaml.safe_dump({"suite": "suite.yaml", "methods": {method: overrides}}))
        refuse(capsys, ["pretrain"], f"method '{method}'", *needles, outer=outer, written=tree(outer))


PARAMS_FAULTS = st.one_of(
    st.tuples(KEY.filter(lambda k: k not in {"suite", "seeds", "methods"}), st.integers()).map(
        lambda kv: ({kv[0]: kv[1]}, [f"unknown key '{kv[0]}'"])),
    wrong_type(str).filter(lambda v: v is not None).map(lambda v: ({"suite": v}, ["params file", "suite"])),
    st.one_of(st.lists(st.integers(-10**6, -1), min_size=1, max_size=2), wrong_type(list[int])).map(
        lambda v: ({"seeds": v}, ["seeds"])),
    st.one_of(st.integers(), TEXT, st.lists(st.integers(), min_size=1)).map(
        lambda v: ({"methods": v}, ["methods", "mapping"])),
    TEXT.filter(lambda m: m not in method_names()).map(
        lambda m: ({"methods": {m: {}}}, ["unknown method", "valid choices"])),
    st.one_of(st.integers(), TEXT, st.lists(st.integers(), min_size=1)).map(
        lambda v: ({"methods": {"simclr": v}}, ["methods.simclr", "mapping"])),
)


@settings(SETTINGS, max_examples=40)
@given(case=PARAMS_FAULTS)
def test_a_params_file_with_one_fault_is_refused(capsys, tripwire, case):
    params, needles = case
    with fresh_project() as (outer, project):
        (project / "suite.yaml").write_text(yaml.safe_dump(VALID_SUITE))
        (project / "params.yaml").write_text(yaml.safe_dump({"suite": "suite.yaml", **params}))
        refuse(capsys, ["pretrain", "--suite", "suite.yaml", "--method", "simclr"], *needles, outer=outer,
               written=tree(outer))


@settings(SETTINGS, max_examples=40)
@given(name=TEXT, which=st.sampled_from(["suite", "method"]), command=st.sampled_from(["pretrain", "evaluate"]))
def test_unknown_suites_and_methods_on_the_command_line(capsys, tripwire, name, which, command):
    if which == "suite":
        if name in suite_names():
            return
        argv, needles = [command, f"--suite={name}", "--method", "simclr"], ["suite"]
    else:
        if name in method_names():
            return
        argv, needles = [command, "--suite", "smoke", f"--method={name}"], ["unknown method", "valid choices are"]
    with fresh_project() as (outer, _):
        refuse(capsys, argv, *needles, outer=outer, written=tree(outer))


def test_every_suite_field_has_a_fault_strategy():
    """The property tests above cover every field of the schema (a new field needs a strategy)."""
    for cls in (Suite, Params, *(get_method(m).Hparams for m in FOUNDATION)):
        for leaf in leaves(cls):
            if leaf.type is not dict and typing.get_origin(leaf.type) is not dict:
                wrong_type(leaf.type if leaf.type != (list[int] | None) else list[int])


# ------------------------------------------------------------------------ suite names

UNSAFE_NAMES = ["../../escaped", "../escaped", "..", ".", "a/b", "/tmp/absolute", "x/../../y", "", " lead",
                "-dash", ".hidden", "back\\slash", "tab\tname", "new\nline", "ünïcode", "a" * 101, "x/"]


@settings(SETTINGS, max_examples=40)
@given(name=st.one_of(st.sampled_from(UNSAFE_NAMES), TEXT.filter(lambda s: not SUITE_NAME.fullmatch(s))),
       command=st.sampled_from(["prepare", "pretrain", "evaluate", "leaderboard", "show"]))
def test_a_suite_name_that_is_not_a_plain_folder_name_is_refused(capsys, tripwire, name, command):
    with fresh_project() as (outer, project):
        (project / "suite.yaml").write_text(yaml.safe_dump({**VALID_SUITE, "name": name}))
        argv = [command, "--suite", "suite.yaml"] + (["--method", "random"] if command in WITH_METHOD else [])
        refuse(capsys, argv, "suite name", "'suite.yaml'", outer=outer, written=tree(outer))


@pytest.mark.parametrize("stem", ["my suite", "-dash", ".hidden", "ü"])
def test_a_suite_named_after_an_unsafe_file_name_is_refused(tmp_path, capsys, monkeypatch, stem):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sub" / f"{stem}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({k: v for k, v in VALID_SUITE.items() if k != "name"}))
    code, _, err = run_cli(capsys, "prepare", "--suite", path)
    assert_one_clean_error(code, err, 2, "suite name", "set `name:` in the file")


@pytest.mark.parametrize("name", ["ok", "ok.v1-2_x", "A9"])
def test_a_valid_suite_name_writes_only_inside_the_project(tmp_path, capsys, monkeypatch, name):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    suite_file = make_project(project, name=name)
    before = tree(tmp_path)
    for command in ("pretrain", "evaluate", "leaderboard"):
        code, _, err = run_cli(capsys, command, "--suite", suite_file, "--method", "random")
        assert code == 0, err
    created = [Path(p).parts for p in tree(tmp_path) - before]
    assert created and all(parts[0] == "project" for parts in created)  # nothing outside the project
    assert {parts[1] for parts in created} == {"runs", "results"}
    assert {parts[2] for parts in created if len(parts) > 2} == {name, ".features"}


def test_suite_names_stay_valid():
    """Every shipped suite passes the name rule."""
    assert all(SUITE_NAME.fullmatch(n) for n in suite_names())


# --------------------------------------------------------- pickles that carry code

class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload_files(directory: Path, marker: Path) -> dict[str, Path]:
    zipped, raw = directory / "zipped.pt", directory / "raw.pkl"
    torch.save({"model": {"w": torch.zeros(2)}, "step": Payload(marker)}, zipped)
    raw.write_bytes(pickle.dumps({"step": Payload(marker)}))
    return {"zipped": zipped, "raw": raw}


def test_the_payload_is_live_when_loaded_unsafely(tmp_path):
    """The control: without weights_only the payload runs (so the refusals below mean something)."""
    marker = tmp_path / "PWNED"
    files = _payload_files(tmp_path, marker)
    torch.load(files["zipped"], weights_only=False)
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["zipped", "raw"])
def test_safe_load_refuses_a_pickle_with_code(tmp_path, kind):
    marker = tmp_path / "PWNED"
    path = _payload_files(tmp_path, marker)[kind]
    with pytest.raises(SSLBenchError, match="not a plain weights file") as info:
        safe_torch_load(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.fixture
def finished_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite_file = make_project(tmp_path, budget=32)
    assert run_cli(capsys, "pretrain", "--suite", suite_file, "--method", "simclr")[0] == 0
    return suite_file, tmp_path / "runs" / "faults" / "simclr" / "seed0"


def _plant(target: Path, marker: Path) -> None:
    """Replace ``target`` with a checkpoint-shaped file whose unpickling would create ``marker``."""
    with tempfile.TemporaryDirectory() as scratch:
        target.write_bytes(_payload_files(Path(scratch), marker)["zipped"].read_bytes())


def test_a_code_carrying_encoder_is_refused_by_evaluate(finished_run, capsys, tmp_path):
    suite_file, run = finished_run
    marker = tmp_path / "PWNED"
    _plant(run / "encoder.pt", marker)
    code, _, err = run_cli(capsys, "evaluate", "--suite", suite_file, "--method", "simclr")
    assert_one_clean_error(code, err, 2, str(run / "encoder.pt"), "not a plain weights file")
    assert not marker.exists()
    assert not (tmp_path / "results" / "faults" / "rows" / "simclr.csv").exists()


def test_a_code_carrying_prepared_dataset_is_refused(finished_run, capsys, tmp_path):
    suite_file, _ = finished_run
    marker = tmp_path / "PWNED"
    _plant(tmp_path / "data" / "faults" / "train.pt", marker)
    code, _, err = run_cli(capsys, "evaluate", "--suite", suite_file, "--method", "simclr")
    assert_one_clean_error(code, err, 2, str(tmp_path / "data" / "faults" / "train.pt"))
    assert not marker.exists()


def test_code_carrying_checkpoints_are_never_run_and_training_recovers(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite_file = make_project(tmp_path, budget=64)
    run = tmp_path / "runs" / "faults" / "simclr" / "seed0"
    run.mkdir(parents=True)
    marker = tmp_path / "PWNED"
    _plant(run / "checkpoint.pt", marker)
    _plant(run / "checkpoint.prev.pt", marker)
    code, out, err = run_cli(capsys, "pretrain", "--suite", suite_file, "--method", "simclr")
    assert code == 0, err
    assert f"checkpoint '{run / 'checkpoint.pt'}' is corrupt or not a plain weights file" in out
    assert not marker.exists()
    import json

    assert json.loads((run / "run.json").read_text())["steps"] == 4


def test_a_code_carrying_feature_cache_entry_is_discarded(finished_run, capsys, tmp_path):
    from evaluations.features import file_digest

    suite_file, run = finished_run
    marker = tmp_path / "PWNED"
    assert run_cli(capsys, "evaluate", "--suite", suite_file, "--method", "simclr")[0] == 0
    (cache,) = (tmp_path / "runs" / ".features" / "faults").glob(f"*{file_digest(run / 'encoder.pt')}*.pt")
    _plant(cache, marker)
    code, _, err = run_cli(capsys, "evaluate", "--suite", suite_file, "--method", "simclr")
    assert code == 0, err
    assert not marker.exists()
    assert torch.load(cache, weights_only=True)["train"].shape[0] == 256  # recomputed


# ------------------------------------------------------------- result files from elsewhere

@pytest.mark.parametrize("content", [
    b"\x00\xff\xfe garbage \x89PNG\r\n\x1a\n" * 50,
    b"",
    b"<html><body>404 Not Found</body></html>\n",
    b"a,b,c\n1,2,3\n",
    None,  # our columns, but text where numbers belong
], ids=["binary", "empty", "html", "foreign-csv", "non-numeric"])
def test_a_foreign_rows_file_stops_the_leaderboard_with_one_sentence(tmp_path, capsys, monkeypatch, content):
    monkeypatch.chdir(tmp_path)
    suite_file = make_project(tmp_path)
    for command in ("pretrain", "evaluate", "leaderboard"):
        assert run_cli(capsys, command, "--suite", suite_file, "--method", "random")[0] == 0
    rows = tmp_path / "results" / "faults" / "rows" / "random.csv"
    if content is None:
        content = rows.read_text().replace("resnet18,0,", "resnet18,zero,").encode()
    rows.write_bytes(content)
    board = tmp_path / "results" / "faults" / "leaderboard.csv"
    before = board.read_bytes()
    code, _, err = run_cli(capsys, "leaderboard", "--suite", suite_file, "--method", "random")
    assert_one_clean_error(code, err, 2, str(rows), "sslbench evaluate --method random")
    assert board.read_bytes() == before  # the previous leaderboard is kept


# ------------------------------------------------------------------ formerly known gaps

def test_an_integer_too_large_for_a_float_is_refused(tmp_path, capsys, monkeypatch, tripwire):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({**VALID_SUITE, "budget": {"value": 10**400}}))
    code, _, err = run_cli(capsys, "pretrain", "--suite", "suite.yaml", "--method", "simclr")
    assert_one_clean_error(code, err, 2, "budget.value")


def test_negative_seeds_on_the_command_line_are_refused(tmp_path, capsys, monkeypatch, tripwire):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(VALID_SUITE))
    code, _, err = run_cli(capsys, "pretrain", "--suite", "suite.yaml", "--method", "simclr", "--seeds", "-1")
    assert_one_clean_error(code, err, 2, "seeds")


def test_label_smoothing_out_of_range_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite_file = make_project(tmp_path, budget=32)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"methods": {"supervised": {"label_smoothing": 5.0}}}))
    code, _, err = run_cli(capsys, "pretrain", "--suite", suite_file)
    assert_one_clean_error(code, err, 2, "label_smoothing")

