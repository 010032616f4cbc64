"""Code that training and serving both run: TF compatibility, errors, text encoding, the export contract."""
