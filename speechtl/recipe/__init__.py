"""Recipes for a user's own corpus: ``speechtl new-recipe`` and what its generic ``run.sh`` asks.

:mod:`speechtl.recipe.generate` writes ``egs/<name>/ASR/`` from ``templates/``
(the same ``run.sh`` for every corpus; the choices in ``conf/``);
:mod:`speechtl.recipe.info` answers the run-time questions of its stages
(``speechtl recipe-info``): the source's features, units, amounts, sources.
"""
