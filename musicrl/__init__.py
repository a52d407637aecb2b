"""musicrl: text-to-music in JAX with the MusicRL post-training loop.

The core package: everything needed to turn text into audio. It imports
nothing from ``rewards``, ``training`` or ``app``.
"""

__version__ = "0.1.0"
