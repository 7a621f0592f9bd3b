"""Training: synthetic bilingual corpus (grammar, synth, augment, corpus), then model recipes."""
