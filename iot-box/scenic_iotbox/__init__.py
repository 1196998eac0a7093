"""Scenic IoT box: the gate-side service that admits visitors offline."""
__version__ = '0.1.0'
