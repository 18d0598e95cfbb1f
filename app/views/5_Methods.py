"""One card per registered method: paper, family, mechanism, defaults and deviations (from the code), the views
its ``views()`` returns and the hyper-parameters the pipeline runs (params.yaml's suite and overrides applied)."""

import pandas as pd
import streamlit as st

import data
import meta
import tables
import widgets

widgets.page("Methods", "Read from the method registry and each method file's docstring; nothing is re-typed here.")

cards = meta.method_cards()
overrides = meta.params_overrides(data.CODE_ROOT / "params.yaml")
suite = meta.params_suite(data.CODE_ROOT / "params.yaml")
search_col, family_col = st.columns([2, 1])
query = search_col.text_input("Search", key="search", placeholder="name, paper, family or any word of the docstring",
                              help="Case-insensitive; every word must match")
families = sorted({c["family"] for c in cards})
chosen = family_col.multiselect("Family", families, default=families, key="families")
words = query.lower().split()
shown = [c for c in cards if c["family"] in chosen
         and all(w in " ".join([c["name"], c["paper"], c["family"], c["doc"]]).lower() for w in words)]
st.markdown(f"{len(shown)} of {len(cards)} registered methods · jump to: "
            + " · ".join(f"[{c['name']}](#{c['name'].replace('_', '-')})" for c in shown))

for card in shown:
    with st.container(border=True):
        st.subheader(card["name"], anchor=card["name"].replace("_", "-"))
        given = overrides.get(card["name"])
        try:
            ran = meta.method_run(card["name"], suite, given or {}) if suite else None
        except Exception as err:  # a method file mid-edit, or a bad override: the card still shows the docstring
            st.warning(f"Could not build `{card['name']}` as suite `{suite}` runs it ({err}); the table shows the "
                       "code defaults.")
            ran = None
        st.markdown(f"**Paper:** {meta.to_markdown(card['paper'])}  \n**Family:** {card['family']}"
                    + ("" if card["trains"] else " · never trained"))
        if ran and ran["views"]:
            st.markdown(f"**Views** (`views({ran['resolution']})` on suite `{suite}`'s {ran['backbone']}): "
                        + f"`{tables.describe_views(ran['views'])}`")
        st.markdown(f"**Mechanism.** {meta.to_markdown(card['mechanism'])}")
        if card["defaults"]:
            st.markdown(f"**Paper defaults.** {meta.to_markdown(card['defaults'])}")
        st.markdown(f"**Deviations.** {meta.to_markdown(card['deviations']) or 'none stated.'}")
        if card["flag"]:
            st.warning(f"Results of this method are flagged `deviation`: {meta.to_markdown(card['flag'])}")
        table = meta.hparams_ran(card["hparams"], given or {}, ran["hparams"] if ran else None)
        if ran:
            label = (f"Hyper-parameters run by the pipeline on suite `{suite}` (code defaults, then the suite's "
                     "optimizer, then params.yaml's overrides)" if given is not None else
                     f"Hyper-parameters on suite `{suite}` (code defaults and the suite's optimizer; the method is "
                     "not listed in params.yaml)")
        else:
            label = "Hyper-parameters (code defaults)"
        with st.expander(label):
            st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
        with st.expander("Full docstring"):
            st.markdown(meta.to_markdown(card["doc"]))
