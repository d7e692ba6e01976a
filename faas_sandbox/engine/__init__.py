"""The sandbox engine: forker, children, wire format, restricted language.

Public names are re-exported by :mod:`faas_sandbox` (``Sandbox``, ``Outcome``, ``Policy``);
other layers import from there. ``isolation/`` holds the OS-level confinement steps.
"""
