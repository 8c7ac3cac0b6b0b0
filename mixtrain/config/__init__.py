"""The project's config schema, one module per domain (data, training, evaluation).

Engines import their section's types from here; loading a project directory (files, references between
sections, locations) is :mod:`mixtrain.project`'s job, which engines never import.
"""
