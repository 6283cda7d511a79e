"""Claims: flock-held files that say "this process owns that output / work dir" and vanish with it.

(A claim is a file lock; "lock" alone means the pinned-input lock file of `trove-builder lock`.)"""
