import streamlit as st

st.set_page_config(page_title="Contrastive Playground", layout="wide")
st.title("Contrastive Playground")
st.write("Placeholder: the app shell comes with the app issue.")
