"""relman: the container release manager for the Fermi LAT SAS software."""
__version__ = "0.1.0"
