"""video-supervisor: keeps a GPU host busy, cool and honest while it turns recordings into counts."""

__version__ = "2.1.0"
