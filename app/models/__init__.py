"""The models workflow: datasets, training, export, validation, the model store, shadow mode and
backtests (see ``models/README.md``).

The engine imports only :mod:`.store`, :mod:`.commands`, :mod:`.shadow` and :mod:`.validate` (and
through them nothing heavier than onnxruntime and numpy); :mod:`.train` needs the optional
``train`` extra (torch) and runs on a workstation.
"""
