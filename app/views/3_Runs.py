"""Pretraining runs: loss, throughput and collapse metrics over steps for several runs at once (overlaid),
cost and environment side by side, and the configuration difference of two runs."""

import pandas as pd
import streamlit as st

import charts
import data
import meta
import widgets

CURVES = [("training loss", ["loss"]), ("images / s", ["images_per_s"]),
          ("collapse: per-channel std of normalised embeddings", ["embed_std", "embed_std_ideal"]),
          ("collapse: effective rank", ["eff_rank"]), ("learning rate", ["lr"])]
KNOWN = {"step", "images_seen", "seconds"} | {c for _, cols in CURVES for c in cols}
ENVIRONMENT = ["device", "device_name", "threads", "torch", "git_rev", "precision", "finished"]
COST = ["status", "steps", "images_seen", "seconds", "flops", "flops_per_step", "peak_mem_mb", "diverged_step"]

widgets.page("Runs", "Training curves of one or several runs from runs/ (overlaid), their cost and environment, "
             "and what differs between two runs' recorded configurations.")

runs = data.runs()
if runs.empty:
    widgets.not_yet("Run artefacts", "runs/",
                    "runs/ is not committed (git-ignored DVC outputs); it exists after a local run "
                    "(`make run`, `dvc repro` or `sslbench pretrain`).")
    st.stop()

variant = runs["backbone"].map(lambda b: f" ({b})" if isinstance(b, str) else "")  # a non-default backbone
runs = runs.assign(label=runs["method"] + variant + " · seed " + runs["seed"].astype(str))
left, right = st.columns([1, 3])
with left:
    suite = widgets.pick("Suite", sorted(runs["suite"].unique()), default="tiny")
options = runs.loc[runs["suite"] == suite, "label"].tolist()
default = [o for o in options if o.startswith("simclr ·")][:2] or options[:1]
with right:
    chosen = st.multiselect("Runs (method · seed), overlaid", options, default=default, key="runs",
                            help="Pick several methods or seeds to compare their curves")
if not chosen:
    st.info("Pick at least one run above.")
    st.stop()
picked = runs[(runs["suite"] == suite) & runs["label"].isin(chosen)].set_index("label").loc[chosen]
records = {label: data.run_record(row["path"]) for label, row in picked.iterrows()}
logs = {label: data.run_metrics(row["path"]) for label, row in picked.iterrows()}

for label, record in records.items():
    if record is None:
        st.warning(f"`{label}`: no run.json yet: the run is in progress or was interrupted (it is written when a "
                   "run ends).")
    elif record.get("status") != "complete":
        st.error(f"`{label}`: status **{record.get('status')}** (diverged at step {record.get('diverged_step')}).")

st.subheader("Curves")
trained = {label: log for label, log in logs.items() if log is not None and not log.empty}
for label in [k for k in logs if k not in trained]:
    st.info(f"`{label}`: no metrics.jsonl: this run logged no training steps (baselines such as `random` are "
            "never trained).")
if trained:
    log = pd.concat([frame.assign(run=label) for label, frame in trained.items()], ignore_index=True)
    extra = [c for c in log.columns if c not in KNOWN | {"run"} and log[c].dtype.kind in "fi"]
    curves = [(t, [c for c in cols if c in log]) for t, cols in CURVES] + [(f"method scalar: {c}", [c])
                                                                          for c in extra]
    columns = st.columns(2)
    for i, (title, cols) in enumerate([(t, c) for t, c in curves if c]):
        with columns[i % 2]:
            widgets.chart(charts.run_lines(log, "step", cols), title)
    st.caption("embed_std_ideal (dashed) = 1/√d, the std of uniformly spread unit vectors; a collapsing run falls "
               "to 0. eff_rank: exp of the entropy of the embedding's normalised singular values.")

done = {label: record for label, record in records.items() if record is not None}
if done:
    st.subheader("Cost and environment")
    side = pd.DataFrame({label: {k: record.get(k) for k in COST + ENVIRONMENT if k in record}
                         for label, record in done.items()})
    st.dataframe(side.rename_axis("field").reset_index().fillna("").astype(str), hide_index=True, width="stretch",
                 height=widgets.table_height(len(side)))

    st.subheader("Configuration")
    labels = list(done)
    a_col, b_col = st.columns(2)
    first = a_col.selectbox("Run A", labels, index=0, key="run_a")
    second = b_col.selectbox("Run B", labels, index=min(1, len(labels) - 1), key="run_b") if len(labels) > 1 \
        else None
    config = {label: meta.flat_hparams({k: v for k, v in record.items() if k not in COST and k not in ENVIRONMENT})
              for label, record in done.items()}
    if second and second != first:
        keys = sorted(set(config[first]) | set(config[second]))
        diff = pd.DataFrame([{"key": k, first: config[first].get(k, "—"), second: config[second].get(k, "—")}
                             for k in keys if config[first].get(k) != config[second].get(k)])
        st.caption(f"{len(diff)} of {len(keys)} recorded settings differ between `{first}` and `{second}`.")
        if not diff.empty:
            st.dataframe(diff, hide_index=True, width="stretch")
    with st.expander(f"Resolved configuration of `{first}` (run.json)"):
        st.json({k: v for k, v in done[first].items() if k not in COST and k not in ENVIRONMENT}, expanded=2)

st.subheader("Artefacts")
st.dataframe([{"run": label, "file": data.relative(p), "size (kB)": round(p.stat().st_size / 1024, 1)}
              for label, row in picked.iterrows() for p in sorted(row["path"].iterdir()) if p.is_file()],
             hide_index=True, width="stretch")
