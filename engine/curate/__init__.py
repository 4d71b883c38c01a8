"""Curation: filter stages, scorers and the selector, one per file, each a registry entry.

Every stage stores its score per image and a pass/fail (or ``unavailable``) with a reason, so the
Curate page can show why each sample was kept or dropped. ``engine/curate/run.py`` is the job
that runs the configured stages in order and records the funnel.
"""
