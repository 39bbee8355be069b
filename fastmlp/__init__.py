"""fastmlp: textbook MLP layers on compiled kernels (placeholder while the core is built)."""
__version__ = "0.1.0"
