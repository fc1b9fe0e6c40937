"""Network blocks and GAN utilities (U-Net factory, ResNet generator, PatchGAN, image pools, LSGAN,
SIFA's networks, the ignore-label losses). The lowest model layer: it imports nothing above it."""
