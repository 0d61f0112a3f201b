"""Distributions pyro_lvm adds to ``pyro.distributions``."""

__all__: list[str] = []
