"""The results schema: evaluation protocols, row statuses and the leaderboard's columns.

Torch-free (the app and the CLI import it without torch). Every place that names a
protocol reads it from here: the result rows and leaderboard (``pipeline.results``),
the transfer stage (``pipeline.transfer``), ``sslbench show`` (``pipeline.cli``) and the
app (``app/tables.py``). Where the files live (results/<suite>/..., runs/<suite>/...) is
``bench.paths``.

A protocol is a row's ``protocol`` id; the leaderboard turns it into the columns
``<id>`` (mean over seeds), ``<id>_std`` and, when a seed lacks the value, ``<id>_n``.
Adding one is one entry in ``PROTOCOLS`` below plus the evaluation that writes its
rows (DEVELOPERS.md, "Adding a protocol").
"""

from __future__ import annotations

from dataclasses import dataclass

PRETRAINED, TRANSFER = "pretrained", "transfer"  # the table a protocol is shown in (its stage's output)


@dataclass(frozen=True)
class Protocol:
    id: str  # the rows' ``protocol`` value and the leaderboard's column name
    label: str  # display name: the app's column headers and ``sslbench show``
    help: str  # one sentence for tooltips
    metric: str  # the rows' ``metric`` the leaderboard averages ("top1" or "ap")
    group: str = PRETRAINED  # PRETRAINED: ``sslbench evaluate``'s rows; TRANSFER: ``sslbench transfer``'s
    metric_key: str | None = None  # its key in results/<suite>/metrics/*.json (``dvc metrics show``); None: not there
    decimals: int = 2  # printed by ``sslbench show``: AP to one decimal, as COCO-style tables report it
    family: str = ""  # the suite's ``eval.protocols`` entry that asks for it ("knn", "linear", "semi"); "" = transfer
    label_fraction: float | None = None  # semi-supervised: the fraction of the training labels fine-tuned on
    simclr_list: str | None = None  # semi-supervised: SimCLR's ImageNet list file of that fraction

    def __post_init__(self):
        if self.group not in (PRETRAINED, TRANSFER):
            raise ValueError(f"protocol {self.id}: group must be {PRETRAINED!r} or {TRANSFER!r}")


# The suite's ``eval.protocols`` entries (bench/config.py validates against these), and the ids of
# the protocols the evaluate stage computes and reads back by name.
FAMILY_KNN, FAMILY_LINEAR, FAMILY_SEMI = "knn", "linear", "semi"
FAMILIES: tuple[str, ...] = (FAMILY_KNN, FAMILY_LINEAR, FAMILY_SEMI)
KNN20, KNN200, LINEAR, SEMI_1PCT, SEMI_10PCT = "knn_k20", "knn_k200", "linear", "semi_1pct", "semi_10pct"

_KNN = "kNN top-1 (%) on frozen features: k = {k} cosine neighbours, votes weighted exp(s / 0.07)"
_SEMI = "Top-1 (%) after fine-tuning backbone and head on {p} % of the labels"

PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(KNN20, "kNN k=20", _KNN.format(k=20), "top1", metric_key="knn20", family=FAMILY_KNN),
    Protocol(KNN200, "kNN k=200", _KNN.format(k=200), "top1", metric_key="knn200", family=FAMILY_KNN),
    Protocol(LINEAR, "linear", "Linear-probe top-1 (%) on frozen features (final epoch, never the max)", "top1",
             metric_key="linear", family=FAMILY_LINEAR),
    Protocol(SEMI_1PCT, "semi 1 %", _SEMI.format(p=1), "top1", metric_key="semi1", family=FAMILY_SEMI,
             label_fraction=0.01, simclr_list="1percent.txt"),
    Protocol(SEMI_10PCT, "semi 10 %", _SEMI.format(p=10), "top1", metric_key="semi10", family=FAMILY_SEMI,
             label_fraction=0.10, simclr_list="10percent.txt"),
    Protocol("det_box_ap", "box AP", "Box AP (%, COCO AP@[.5:.95]) of a Mask R-CNN fine-tuned on the suite's "
             "detection scenes", "ap", TRANSFER, "box", 1),
    # AP50 / AP75 have no metric key: ``dvc metrics show`` prints every key of every file as one table, and four
    # more columns (mean and -sd) push it past 200 columns. leaderboard.csv, ``sslbench show`` and the app show them.
    Protocol("det_box_ap50", "box AP50", "Box AP50 (%, IoU 0.5) of the same Mask R-CNN fine-tune", "ap", TRANSFER,
             None, 1),
    Protocol("det_box_ap75", "box AP75", "Box AP75 (%, IoU 0.75) of the same Mask R-CNN fine-tune", "ap", TRANSFER,
             None, 1),
    Protocol("seg_mask_ap", "mask AP", "Mask AP (%, COCO AP@[.5:.95]) of the same Mask R-CNN fine-tune", "ap",
             TRANSFER, "mask", 1),
)

BY_ID: dict[str, Protocol] = {p.id: p for p in PROTOCOLS}
IDS: list[str] = [p.id for p in PROTOCOLS]  # the declared order: columns, tables and charts follow it
LABELS: dict[str, str] = {p.id: p.label for p in PROTOCOLS}
HELP: dict[str, str] = {p.id: p.help for p in PROTOCOLS}
GROUPS: dict[str, list[str]] = {g: [p.id for p in PROTOCOLS if p.group == g] for g in (PRETRAINED, TRANSFER)}
TRANSFER_IDS: list[str] = GROUPS[TRANSFER]
METRIC_KEYS: dict[str, str] = {p.id: p.metric_key for p in PROTOCOLS if p.metric_key}
SEMI_FRACTIONS: dict[str, float] = {p.id: p.label_fraction for p in PROTOCOLS if p.label_fraction}
SIMCLR_LISTS: dict[str, str] = {p.id: p.simclr_list for p in PROTOCOLS if p.simclr_list}

# Row statuses, best first: a leaderboard row takes the worst status of its pretrained rows.
COMPLETE, DEVIATION, DIVERGED, FAILED = "complete", "deviation", "diverged", "failed"
STATUSES: tuple[str, ...] = (COMPLETE, DEVIATION, DIVERGED, FAILED)

# Method families that are not self-supervised methods (the leaderboard's baselines and references).
NOT_SSL_FAMILIES: tuple[str, ...] = ("baseline", "supervised")

# Leaderboard columns derived from a protocol id.
STD_SUFFIX, N_SUFFIX = "_std", "_n"


def knn_id(k: int) -> str:
    """The protocol id of kNN with ``k`` neighbours (``knn_k20``); a ``k`` not declared above still gets rows."""
    return f"knn_k{k}"


def requested(families, knn_k) -> list[str]:
    """The protocol ids a suite's ``eval.protocols`` (families) and ``eval.knn.k`` ask for, in the declared order."""
    ids: list[str] = []
    for family in FAMILIES:
        if family in families:
            declared = [p.id for p in PROTOCOLS if p.family == family]
            ids += [knn_id(k) for k in knn_k] if family == FAMILY_KNN else declared
    return ids


def std_column(protocol: str) -> str:
    """``<protocol>_std``: the std over seeds (NaN with one seed)."""
    return protocol + STD_SUFFIX


def n_column(protocol: str) -> str:
    """``<protocol>_n``: the seeds that have a value, present only when fewer than ``n_seeds``."""
    return protocol + N_SUFFIX


def label(protocol: str) -> str:
    """The display label of a protocol id; an unknown id is shown as it is."""
    return LABELS.get(protocol, protocol)


def in_columns(columns) -> list[str]:
    """The protocol ids that have a column among ``columns``, in the declared order."""
    present = set(columns)
    return [p for p in IDS if p in present]


def group_of(protocol: str) -> str:
    return BY_ID[protocol].group
