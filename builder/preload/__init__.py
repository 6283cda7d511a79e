"""Datastore images baked into guests: archives checked on the host, loaded by the guest's dockerd."""
