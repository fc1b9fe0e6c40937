"""Unpaired image translation between modalities (CycleGAN, disentangled content/style).

Translators are methods on the shared training loop whose inference network is the
source -> target generator; `xmodseg.translation.apply` turns a trained translator into a
translated slice cache that downstream segmenters read like any preprocessing cache.
"""
