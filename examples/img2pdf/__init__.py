"""Image-to-PDF: the reference handler of the seed, in Python (see README.md)."""
