"""One card per registered method: paper, family, mechanism, defaults and deviations (from the code)."""

import pandas as pd
import streamlit as st

import meta
import widgets

widgets.page("Methods", "Read from the method registry and each method file's docstring; nothing is re-typed here.")

cards = meta.method_cards()
st.caption(f"{len(cards)} registered methods: " + ", ".join(f"`{c['name']}`" for c in cards))
for card in cards:
    with st.container(border=True):
        st.subheader(card["name"])
        st.markdown(f"**Paper:** {card['paper']}  \n**Family:** {card['family']} · **views:** "
                    f"`{card['view_recipe']}`" + ("" if card["trains"] else " · never trained"))
        st.markdown(f"**Mechanism.** {card['mechanism']}")
        if card["defaults"]:
            st.markdown(f"**Paper defaults.** {card['defaults']}")
        st.markdown(f"**Deviations.** {card['deviations'] or 'none stated.'}")
        if card["flag"]:
            st.warning(f"Results of this method are flagged `deviation`: {card['flag']}")
        with st.expander("Defaults in the code (Hparams)"):
            flat = meta.flat_hparams(card["hparams"])
            st.dataframe(pd.DataFrame({"hyper-parameter": list(flat), "default": list(flat.values())}),
                         hide_index=True)
