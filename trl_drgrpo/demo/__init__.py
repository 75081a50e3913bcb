"""The offline demo and lab: a tiny model built by the project (``tiny``), a synthetic arithmetic task
(``synthetic``), its pretraining (``pretrain``) and training-curve plots (``plots``). Not on the core path:
the trainer, reward and evaluation never import it."""
