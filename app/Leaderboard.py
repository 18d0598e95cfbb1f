"""The app's entry point (`streamlit run app/Leaderboard.py`): pages in a top menu, so tables get the full width.

The pages live in app/views/, not app/pages/: Streamlit would otherwise also build its own sidebar menu from
pages/ whenever a page's address is opened directly.
"""

import streamlit as st

PAGES = [
    st.Page("board.py", title="Leaderboard", default=True),
    st.Page("views/1_ImageNet_board.py", title="ImageNet board", url_path="ImageNet_board"),
    st.Page("views/2_Ablations.py", title="Ablations", url_path="Ablations"),
    st.Page("views/3_Runs.py", title="Runs", url_path="Runs"),
    st.Page("views/4_Claims.py", title="Claims", url_path="Claims"),
    st.Page("views/5_Methods.py", title="Methods", url_path="Methods"),
    st.Page("views/6_Cost_vs_accuracy.py", title="Cost vs accuracy", url_path="Cost_vs_accuracy"),
    st.Page("views/7_Budget_curves.py", title="Budget curves", url_path="Budget_curves"),
]
st.navigation(PAGES, position="top").run()
