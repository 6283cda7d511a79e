"""The builder image, reproducibly: its Debian packages locked (containerfiles/builder.lock.json) and the
image assembled from exactly those files, so the same lock, code and cache give the same image ID."""
