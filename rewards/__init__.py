"""Reward and preference models (DESIGN §8). Imports only ``musicrl``."""
