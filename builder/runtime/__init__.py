"""Where the pipeline runs: in the builder container (docker, podman) or on this host (none)."""
