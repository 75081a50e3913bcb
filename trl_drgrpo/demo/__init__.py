"""The offline demo and lab: a tiny model built by the project (``tiny``), a synthetic arithmetic task with
length as a free choice (``synthetic``), its pretraining (``pretrain``), the ``make demo`` pipeline (``run``),
its seed sweep (``sweep``), the bias lab (``lab``, report in ``lab_report``) and training-curve plots
(``plots``). Not on the core path: the trainer, reward and evaluation never import it."""
