"""One pretraining run: loss, throughput and collapse metrics over steps; config, environment, cost, artefacts."""

import streamlit as st

import charts
import data
import widgets

CURVES = [("training loss", ["loss"]), ("images / s", ["images_per_s"]),
          ("collapse: per-channel std of normalised embeddings", ["embed_std", "embed_std_ideal"]),
          ("collapse: effective rank", ["eff_rank"]), ("learning rate", ["lr"])]
KNOWN = {"step", "images_seen", "seconds"} | {c for _, cols in CURVES for c in cols}
ENVIRONMENT = ["device", "device_name", "threads", "torch", "git_rev", "precision", "finished"]
COST = ["status", "steps", "images_seen", "seconds", "flops", "flops_per_step", "peak_mem_mb", "diverged_step"]

widgets.page("Runs", "Training curves and the recorded configuration of one run from runs/.")

runs = data.runs()
if runs.empty:
    widgets.not_yet("Run artefacts", "runs/",
                    "runs/ is not committed (git-ignored DVC outputs); it exists after a local run "
                    "(`make run`, `dvc repro` or `sslbench pretrain`).")
    st.stop()

left, middle, right = st.columns(3)
with left:
    suite = widgets.pick("Suite", sorted(runs["suite"].unique()), default="tiny")
with middle:
    method = widgets.pick("Method", sorted(runs.loc[runs["suite"] == suite, "method"].unique()), default="simclr")
with right:
    seed = widgets.pick("Seed", sorted(runs.loc[(runs["suite"] == suite) & (runs["method"] == method), "seed"]))
run = runs[(runs["suite"] == suite) & (runs["method"] == method) & (runs["seed"] == seed)]["path"].iloc[0]
record, log = data.run_record(run), data.run_metrics(run)

if record is None:
    st.warning("No run.json yet: the run is in progress or was interrupted (it is written when a run ends).")
elif record.get("status") != "complete":
    st.error(f"Status **{record.get('status')}** (diverged at step {record.get('diverged_step')}).")

st.subheader("Curves")
if log is None or log.empty:
    st.info("No metrics.jsonl: this run logged no training steps (baselines such as `random` are never trained).")
else:
    extra = [c for c in log.columns if c not in KNOWN and log[c].dtype.kind in "fi"]
    curves = [(t, [c for c in cols if c in log]) for t, cols in CURVES] + [(f"method scalar: {c}", [c])
                                                                          for c in extra]
    columns = st.columns(2)
    for i, (title, cols) in enumerate([(t, c) for t, c in curves if c]):
        with columns[i % 2]:
            widgets.chart(charts.lines(log, "step", cols, title))
    st.caption("embed_std_ideal = 1/√d, the std of uniformly spread unit vectors; a collapsing run falls to 0. "
               "eff_rank: exp of the entropy of the embedding's normalised singular values.")

if record is not None:
    st.subheader("Cost and environment")
    cost, env = st.columns(2)
    cost.json({k: record.get(k) for k in COST if k in record})
    env.json({k: record.get(k) for k in ENVIRONMENT if k in record})
    st.subheader("Resolved configuration (run.json)")
    st.json({k: v for k, v in record.items() if k not in COST and k not in ENVIRONMENT}, expanded=2)

st.subheader("Artefacts")
st.dataframe([{"file": data.relative(p), "size (kB)": round(p.stat().st_size / 1024, 1)}
              for p in sorted(run.iterdir()) if p.is_file()], hide_index=True)
