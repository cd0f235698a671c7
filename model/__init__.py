"""Networks that map a 12-lead ECG to activation times and transmembrane voltages at 75 sites.

``network`` (the 1-D SqueezeNet variants), ``data`` (reading shard data
sets), ``train`` with ``distributed`` and ``checkpoint`` (``ecgi train``, one
process, torchrun or srun), ``evaluate`` and ``report`` (``ecgi evaluate``),
``predict`` (``ecgi predict``: HDF5, CSV and WFDB readers), ``synthetic``
(a small data set whose targets the ECG determines) and ``config``.  Nothing
is imported here, so ``import model.cli`` does not load torch.
"""
