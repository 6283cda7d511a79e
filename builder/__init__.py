"""trove-builder: containerized, reproducible builder of OpenStack Trove guest images."""

__version__ = "0.1.0"
