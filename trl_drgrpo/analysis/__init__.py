"""The paper's critical measurements on any evaluation or training run.

One module per command, each with a function of the same name that returns its summary dict and writes
``summary.json``, a Markdown table and PNG plots into ``output_dir``:

- ``reflection.reflection``: self-reflection rate and accuracy with / without it (Figure 15);
- ``answering.answering``: question-answering ability per template (Figure 3, left);
- ``passk.passk``: pass@k curves, k = 1..n;
- ``dynamics.dynamics``: training curves of runs, grouped by arm (Figures 5, 7, 8);
- ``templates_table.templates``: Table 1 (model × template × step by benchmark).
- ``paper.paper``: evaluations beside the paper's Tables 1 and 4 (``paper_tables``), with noise and verdicts.

The command line is ``trl-drgrpo analyze <command>`` or ``python -m trl_drgrpo.analysis <command>``
(``cli.main``). Bad input raises ``AnalysisError`` (a ``ValueError``) with a one-line message.
"""

from .io import AnalysisError

__all__ = ["AnalysisError"]
