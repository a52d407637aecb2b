"""Post-training objectives on one shared loop (DESIGN §9). Imports ``musicrl`` and ``rewards``."""
