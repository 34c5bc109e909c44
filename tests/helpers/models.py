"""Shapes of the small random models the tests build."""

# A 1-layer, 32-wide model of every family: fast on two CPU cores.
TINY_SHAPE = {"hidden": 32, "layers": 1, "heads": 2}
