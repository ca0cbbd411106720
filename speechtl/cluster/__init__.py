"""Where jobs run: one interface for every backend (Kaldi's run.pl idea).

``cmd.sh`` in a recipe sets ``cmd``; steps pass it on as ``--cmd``. A step
splits its work into ``nj`` jobs and hands them to :func:`get_executor`.
"""

from speechtl.cluster.executor import LocalExecutor, SlurmExecutor, get_executor

__all__ = ["LocalExecutor", "SlurmExecutor", "get_executor"]
