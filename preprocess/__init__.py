"""Preprocessing, the one-time untimed stage: videos to frame stores (``make frames``), the
dataset itself (``make data``, ``make check``) and the built-in synthetic dataset (``make synth``).

- frames.py    build a store: every video decoded once, the 15-fps frames kept, scaled, JPEG'd
               (task.py one video, extract.py its frames, resample.py the 15-fps rule, pack.py
               the HDF5 packing, lock.py the store locks, failures.py the failures summary)
- verify.py    ``make verify``: every indexed frame present and decodable, the fingerprint
- identity.py  what a store is (settings, dataset check, fingerprint) and whether it is compliant
- kinetics.py, dataset_check.py, getdata.py: the Kinetics layout, the manifest check, ``make data``
- synth.py, encode.py: the synthetic dataset and its mp4 writer

The store's format itself is the contract formats/store.py.
"""
