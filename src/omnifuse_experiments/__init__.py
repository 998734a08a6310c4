"""Experiments built on omnifuse: the demo, the studies and the real-data recipes.

Kept out of the ``omnifuse`` library (as open_clip keeps its trainer in ``open_clip_train``):
the library never imports this package, and its commands (``omnifuse demo``, ``omnifuse study``,
``omnifuse recipe``) reach the ``omnifuse`` CLI through the ``omnifuse.commands`` entry-point
group (see :mod:`omnifuse.cli.plugins`). The name is not ``experiments`` because that top-level
name would collide with any other distribution's ``experiments`` package in site-packages.
"""
