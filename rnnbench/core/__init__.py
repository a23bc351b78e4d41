"""The models, tasks and training strategies of Deep Learning §10.2 (torch):
what a cell computes."""
