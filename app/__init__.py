"""The Gradio web app and the preference store (DESIGN §11). Imports ``musicrl`` and ``rewards``."""
