"""The app's entry point (`streamlit run app/Leaderboard.py`): pages in a top menu, so tables get the full width."""

import streamlit as st

PAGES = [
    st.Page("board.py", title="Leaderboard", default=True),
    st.Page("pages/1_ImageNet_board.py", title="ImageNet board"),
    st.Page("pages/2_Ablations.py", title="Ablations"),
    st.Page("pages/3_Runs.py", title="Runs"),
    st.Page("pages/4_Claims.py", title="Claims"),
    st.Page("pages/5_Methods.py", title="Methods"),
    st.Page("pages/6_Cost_vs_accuracy.py", title="Cost vs accuracy"),
]
st.navigation(PAGES, position="top").run()
